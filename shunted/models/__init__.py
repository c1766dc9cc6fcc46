"""The network and its variants: ``ShuntedTransformer`` and the registry (``list_models``, ``get_pretrained_cfg``).

The registry is plain Python; ``ShuntedTransformer`` (Paddle) is imported on first use, so modules that need only
the variants' facts (the PIL/numpy transforms, the command line's ``--help``) do not load Paddle. Building a model
from a name and a checkpoint file is ``shunted.factory.create_model``.
"""

from __future__ import annotations

from .registry import (
    VARIANTS,
    PretrainedConfig,
    Variant,
    det_backbone_name,
    get_pretrained_cfg,
    get_variant,
    is_det_model,
    is_seg_model,
    list_det_models,
    list_models,
    list_seg_models,
    seg_backbone_name,
)

__all__ = [
    "VARIANTS",
    "PretrainedConfig",
    "ShuntedFPN",
    "ShuntedRetinaNet",
    "ShuntedTransformer",
    "Variant",
    "det_backbone_name",
    "get_pretrained_cfg",
    "get_variant",
    "is_det_model",
    "is_seg_model",
    "list_det_models",
    "list_models",
    "list_seg_models",
    "seg_backbone_name",
]


def __getattr__(name: str):
    if name == "ShuntedTransformer":  # PEP 562: Paddle loads only when the network is asked for
        from .shunted import ShuntedTransformer

        return ShuntedTransformer
    if name == "ShuntedFPN":  # the segmentation model (models/fpn.py), Paddle too
        from .fpn import ShuntedFPN

        return ShuntedFPN
    if name == "ShuntedRetinaNet":  # the detection model (models/retinanet.py), Paddle too
        from .retinanet import ShuntedRetinaNet

        return ShuntedRetinaNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
