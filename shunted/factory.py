"""The model factory: a variant name and optionally a checkpoint file → a ready ``ShuntedTransformer``.

It sits above ``models/`` (the network) and ``convert/`` (reading checkpoint files), so that neither of those
imports the other: ``shunted.create_model`` and every command build their model here. Segmentation names
(``shunted_t_fpn`` …, ``models/registry.py`` ``SEG_VARIANTS``) build a ``ShuntedFPN`` (``models/fpn.py``).
"""

from __future__ import annotations

import logging
import os
import re

from .convert import read_weights
from .convert.reader import read_state_dict
from .errors import WeightsError
from .models.det_boxes import AnchorConfig
from .models.fpn import ShuntedFPN
from .models.registry import (
    FPN_HEAD_CHANNELS,
    det_backbone_name,
    get_variant,
    is_det_model,
    is_seg_model,
    list_det_models,
    list_seg_models,
    seg_backbone_name,
    variant_for,
)
from .models.retinanet import ShuntedRetinaNet
from .models.shunted import ShuntedTransformer
from .models.weights import apply_state_dict

__all__ = ["create_det_model", "create_model", "create_seg_model"]

log = logging.getLogger(__name__)

SEG_CLASSIFIER = "decode_head.conv_seg."
DET_CLASSIFIER = "bbox_head.retina_cls."
NUM_ANCHORS = AnchorConfig().num_anchors  # per place: 3 scales × 3 ratios
_SEG_BLOCK = re.compile(r"^backbone\.block([1-4])\.(\d+)\.")
_SEG_STEM_CONV = re.compile(r"^backbone\.patch_embed1\.conv\.(\d+)\.weight$")


def create_model(
    name: str,
    pretrained: str | os.PathLike | None = None,
    num_classes: int | None = None,
    **kwargs,
) -> ShuntedTransformer | ShuntedFPN:
    """Build ``shunted_t`` / ``shunted_s`` / ``shunted_b``, optionally with weights.

    pretrained: an official PyTorch ``.pth`` (read without torch), a ``.pdparams`` or a ``.safetensors`` file.
        Loading is strict; a file of another variant is an error.
    num_classes: default the checkpoint's class count, or 1000 without one. When it differs from the
        checkpoint's, everything but the head is loaded strictly and the head is freshly initialised (fine-tuning).
    kwargs: ``drop_path_rate``, ``drop_rate``, ``attn_drop_rate``, ``features_only``, ``out_indices``, ``in_chans``.
        ``features_only=True`` makes a backbone whose forward returns the stage maps chosen by ``out_indices``.

    Segmentation names (``shunted_t_fpn``, ``shunted_s_fpn``, ``shunted_b_fpn``) go to :func:`create_seg_model`
    (``pretrained`` = a whole segmentation model's weights, ``backbone_pretrained`` = a classification checkpoint).
    """
    if is_seg_model(name):
        return create_seg_model(name, num_classes=num_classes, pretrained=pretrained, **kwargs)
    if is_det_model(name):
        return create_det_model(name, num_classes=num_classes, pretrained=pretrained, **kwargs)
    if "backbone_pretrained" in kwargs:
        raise ValueError(
            f"backbone_pretrained is for the segmentation and detection models "
            f"({', '.join(list_seg_models() + list_det_models())}); "
            f"{name} takes its checkpoint as pretrained"
        )
    try:
        variant = get_variant(name)
    except ValueError:
        raise ValueError(f"{name}: {_unknown(name)}") from None
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


def _unknown(name: str) -> str:
    from .models.registry import list_models

    names = list_models() + list_seg_models() + list_det_models()
    return f"unknown model {name!r}; choose one of {', '.join(names)}"


def create_seg_model(
    name: str,
    num_classes: int | None = None,
    backbone_pretrained: str | os.PathLike | None = None,
    pretrained: str | os.PathLike | None = None,
    channels: int | None = None,
    **kwargs,
) -> ShuntedFPN:
    """Build ``shunted_t_fpn`` / ``shunted_s_fpn`` / ``shunted_b_fpn`` (``models/fpn.py``), optionally with weights.

    num_classes: required unless ``pretrained`` gives it. backbone_pretrained: an official classification
        ``.pth`` / ``.pdparams`` / ``.safetensors`` of the backbone's variant, loaded strictly into the backbone
        with its classifier left out. pretrained: a whole segmentation model's weights (``.pdparams`` /
        ``.safetensors`` with the ``ShuntedFPN`` state dict, as seg-train writes them), loaded strictly; when
        ``num_classes`` differs from the file's, everything but ``decode_head.conv_seg`` is loaded and the
        classifier is freshly initialised (fine-tuning to another label set). Both may be given: the backbone
        file is read first and the whole model's weights overwrite it.
    channels: head width (default the file's, else 128). kwargs: ``fpn_channels``, ``dropout_ratio``,
        ``drop_path_rate``, ``drop_rate``, ``attn_drop_rate`` (``ShuntedFPN``).
    """
    backbone_name = seg_backbone_name(name)
    seg = None
    if pretrained is not None:
        seg = read_state_dict(pretrained)
        file_variant, file_classes, file_channels = _describe_seg_state(seg.state, pretrained)
        if file_variant != name:
            raise WeightsError(f"{pretrained}: holds {file_variant} weights, not {name}")
        if channels is None:
            channels = file_channels
        if num_classes is None:
            num_classes = file_classes
    if num_classes is None:
        raise ValueError(f"{name}: give num_classes (the number of segmentation classes)")
    weights = None
    if backbone_pretrained is not None:  # read and checked before the model is built: errors come quickly
        weights = read_weights(backbone_pretrained)
        if weights.variant != backbone_name:
            raise WeightsError(
                f"{backbone_pretrained}: holds {weights.variant} weights, not {backbone_name} (the backbone of {name})"
            )
    model = ShuntedFPN(name, num_classes, channels=channels or FPN_HEAD_CHANNELS, **kwargs)
    model.pretrained_sha256 = None
    model.backbone_sha256 = None
    if weights is not None:
        state = {k: v for k, v in weights.state.items() if not k.startswith("head.")}
        apply_state_dict(model.backbone, state, source=str(backbone_pretrained))
        model.backbone_sha256 = weights.sha256
    if seg is not None:
        ignore = set()
        if file_classes != num_classes:
            ignore = {k for k in (*seg.state, *model.state_dict()) if k.startswith(SEG_CLASSIFIER)}
            log.warning(
                "%s: has %d classes, model has %d: decode_head.conv_seg is newly initialised",
                pretrained,
                file_classes,
                num_classes,
            )
        apply_state_dict(model, seg.state, source=str(pretrained), ignore=ignore)
        model.pretrained_sha256 = seg.sha256
    return model


def _describe_seg_state(state, source) -> tuple[str, int, int]:
    """(model name, classes, head channels) of a segmentation state dict; one-line WeightsError otherwise."""
    if not any(k.startswith("backbone.") for k in state) and any(
        k.startswith("patch_embed1.") for k in state
    ):
        raise WeightsError(
            f"{source}: is a classification checkpoint, not a segmentation model's weights; "
            "give it as backbone_pretrained (seg-train --pretrained)"
        )
    weight = state.get(SEG_CLASSIFIER + "weight")
    if weight is None or weight.ndim != 4 or not any(_SEG_BLOCK.match(k) for k in state):
        shown = ", ".join(list(state)[:4]) + (", …" if len(state) > 4 else "")
        raise WeightsError(
            f"{source}: not a Shunted segmentation model's weights (no backbone.block*/{SEG_CLASSIFIER}weight "
            f"keys; it has {len(state)} keys: {shown or 'none'})"
        )
    backbone = _backbone_of(state, source)
    return f"{backbone}_fpn", int(weight.shape[0]), int(weight.shape[1])


def _backbone_of(state, source) -> str:
    """The Shunted variant of the ``backbone.*`` keys of a dense model's state dict (block depths, stem convs)."""
    blocks: dict[int, set[int]] = {i: set() for i in range(1, 5)}
    for key in state:
        m = _SEG_BLOCK.match(key)
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
    depths = tuple(len(blocks[i]) for i in range(1, 5))
    num_conv = sum(1 for k in state if _SEG_STEM_CONV.match(k) and state[k].ndim == 4) - 2
    backbone = variant_for(depths, num_conv)
    if backbone is None:
        raise WeightsError(
            f"{source}: backbone block depths {list(depths)} with {num_conv} stem convs match no Shunted variant"
        )
    return backbone


def create_det_model(
    name: str,
    num_classes: int | None = None,
    backbone_pretrained: str | os.PathLike | None = None,
    pretrained: str | os.PathLike | None = None,
    **kwargs,
) -> ShuntedRetinaNet:
    """Build ``shunted_t_retinanet`` / ``shunted_s_retinanet`` / ``shunted_b_retinanet`` (``models/retinanet.py``).

    num_classes: object classes (no background); required unless ``pretrained`` gives it. backbone_pretrained: an
        official classification ``.pth`` / ``.pdparams`` / ``.safetensors`` of the backbone's variant, loaded
        strictly into the backbone without its classifier. pretrained: a whole detection model's weights (as
        det-train writes them), loaded strictly; with another ``num_classes`` everything but
        ``bbox_head.retina_cls`` is loaded and the classifier is freshly initialised. kwargs: ``drop_path_rate``.
    """
    backbone_name = det_backbone_name(name)
    det = None
    if pretrained is not None:
        det = read_state_dict(pretrained)
        file_variant, file_classes = _describe_det_state(det.state, pretrained)
        if file_variant != name:
            raise WeightsError(f"{pretrained}: holds {file_variant} weights, not {name}")
        if num_classes is None:
            num_classes = file_classes
    if num_classes is None:
        raise ValueError(f"{name}: give num_classes (the number of object classes)")
    weights = None
    if backbone_pretrained is not None:
        weights = read_weights(backbone_pretrained)
        if weights.variant != backbone_name:
            raise WeightsError(
                f"{backbone_pretrained}: holds {weights.variant} weights, not {backbone_name} (the backbone of {name})"
            )
    model = ShuntedRetinaNet(name, num_classes, **kwargs)
    model.pretrained_sha256 = None
    model.backbone_sha256 = None
    if weights is not None:
        state = {k: v for k, v in weights.state.items() if not k.startswith("head.")}
        apply_state_dict(model.backbone, state, source=str(backbone_pretrained))
        model.backbone_sha256 = weights.sha256
    if det is not None:
        ignore = set()
        if file_classes != num_classes:
            ignore = {k for k in (*det.state, *model.state_dict()) if k.startswith(DET_CLASSIFIER)}
            log.warning(
                "%s: has %d classes, model has %d: bbox_head.retina_cls is newly initialised",
                pretrained,
                file_classes,
                num_classes,
            )
        apply_state_dict(model, det.state, source=str(pretrained), ignore=ignore)
        model.pretrained_sha256 = det.sha256
    return model


def _describe_det_state(state, source) -> tuple[str, int]:
    """(model name, classes) of a detection state dict; one-line WeightsError otherwise."""
    weight = state.get(DET_CLASSIFIER + "weight")
    if weight is None or weight.ndim != 4 or weight.shape[0] % NUM_ANCHORS:
        if any(k.startswith("patch_embed1.") for k in state):
            raise WeightsError(
                f"{source}: is a classification checkpoint, not a detection model's weights; "
                "give it as backbone_pretrained (det-train --backbone-pretrained)"
            )
        shown = ", ".join(list(state)[:4]) + (", …" if len(state) > 4 else "")
        raise WeightsError(
            f"{source}: not a Shunted RetinaNet's weights (no {DET_CLASSIFIER}weight with a multiple of "
            f"{NUM_ANCHORS} outputs; it has {len(state)} keys: {shown or 'none'})"
        )
    return f"{_backbone_of(state, source)}_retinanet", int(weight.shape[0]) // NUM_ANCHORS
