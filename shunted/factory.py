"""The model factory: a variant name and optionally a checkpoint file → a ready ``ShuntedTransformer``.

It sits above ``models/`` (the network) and ``convert/`` (reading checkpoint files), so that neither of those
imports the other: ``shunted.create_model`` and every command build their model here.
"""

from __future__ import annotations

import logging
import os

from .convert import read_weights
from .errors import WeightsError
from .models.registry import get_variant
from .models.shunted import ShuntedTransformer
from .models.weights import apply_state_dict

__all__ = ["create_model"]

log = logging.getLogger(__name__)


def create_model(
    name: str,
    pretrained: str | os.PathLike | None = None,
    num_classes: int | None = None,
    **kwargs,
) -> ShuntedTransformer:
    """Build ``shunted_t`` / ``shunted_s`` / ``shunted_b``, optionally with weights.

    pretrained: an official PyTorch ``.pth`` (read without torch), a ``.pdparams`` or a ``.safetensors`` file.
        Loading is strict; a file of another variant is an error.
    num_classes: default the checkpoint's class count, or 1000 without one. When it differs from the
        checkpoint's, everything but the head is loaded strictly and the head is freshly initialised (fine-tuning).
    kwargs: ``drop_path_rate``, ``drop_rate``, ``attn_drop_rate``, ``features_only``, ``out_indices``, ``in_chans``.
        ``features_only=True`` makes a backbone whose forward returns the stage maps chosen by ``out_indices``.
    """
    variant = get_variant(name)
    weights = None
    if pretrained is not None:
        weights = read_weights(pretrained)
        if weights.variant is not None and weights.variant != name:
            raise WeightsError(f"{pretrained}: holds {weights.variant} weights, not {name}")
    if num_classes is None:
        num_classes = weights.num_classes if weights is not None else variant.pretrained_cfg.num_classes
    model = ShuntedTransformer(variant.depths, variant.num_conv, num_classes=num_classes, **kwargs)
    model.variant = variant
    model.pretrained_cfg = variant.pretrained_cfg
    model.pretrained_sha256 = weights.sha256 if weights is not None else None  # of the file read, for results
    if weights is not None:
        ignore = set()
        keep_fresh_head = not model.features_only and weights.num_classes != num_classes
        if model.features_only or keep_fresh_head:
            ignore = {k for k in weights.state if k.startswith("head.")} | {
                k for k in model.state_dict() if k.startswith("head.")
            }
        if keep_fresh_head:
            log.warning(
                "%s: has %d classes, model has %d: the head is newly initialised",
                pretrained,
                weights.num_classes,
                num_classes,
            )
        apply_state_dict(model, weights.state, source=str(pretrained), ignore=ignore)
    return model
