"""Recognise a Shunted Transformer state dict and its variant from key names and shapes alone.

depths come from the block indices (``block{i}.{j}.``), ``num_conv`` from the stem's conv weights
(``patch_embed1.conv.<n>.weight`` of rank 4: the 7×7, ``num_conv`` 3×3 and the final 2×2), the class count from
the head. The variant is whatever :func:`shunted.models.registry.variant_for` says those numbers are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import WeightsError
from ..models.registry import VARIANTS, variant_for

_BLOCK = re.compile(r"^block([1-4])\.(\d+)\.")
_STEM_CONV = re.compile(r"^patch_embed1\.conv\.(\d+)\.weight$")


@dataclass(frozen=True)
class Detected:
    variant: str
    depths: tuple[int, int, int, int]
    num_conv: int
    num_classes: int


def _shape(value) -> tuple[int, ...]:
    return tuple(np.shape(value))


def detect(state: Mapping[str, object], source: str = "checkpoint", paddle_layout: bool = True) -> Detected:
    """The variant and class count of ``state`` (Paddle or official names); WeightsError if it is not Shunted."""
    keys = list(state)
    is_seg = any(k.startswith("decode_head.") for k in keys)
    if is_seg and any(k.startswith("backbone.patch_embed1.") for k in keys):
        raise WeightsError(
            f"{source}: holds a segmentation model's weights (backbone.*, decode_head.*), not a classifier's; "
            "use it as the weights of a *_fpn model"
        )
    if not any(k.startswith("patch_embed1.") for k in keys) or not any(_BLOCK.match(k) for k in keys):
        shown = ", ".join(keys[:4]) + (", …" if len(keys) > 4 else "")
        raise WeightsError(
            f"{source}: not a Shunted Transformer checkpoint (no patch_embed1/block1 keys; it has {len(keys)} "
            f"keys: {shown or 'none'})"
        )
    blocks: dict[int, set[int]] = {i: set() for i in range(1, 5)}
    for key in keys:
        m = _BLOCK.match(key)
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
    depths = tuple(len(blocks[i]) for i in range(1, 5))
    stem_convs = [k for k in keys if _STEM_CONV.match(k) and len(_shape(state[k])) == 4]
    num_conv = len(stem_convs) - 2
    variant = variant_for(depths, num_conv)
    if variant is None:
        known = "; ".join(
            f"{v.name} depths {list(v.depths)} num_conv {v.num_conv}" for v in VARIANTS.values()
        )
        raise WeightsError(
            f"{source}: block depths {list(depths)} with {num_conv} stem convs match no Shunted variant ({known})"
        )
    if "head.weight" not in state:
        raise WeightsError(f"{source}: no classifier (head.weight is missing)")
    head = _shape(state["head.weight"])
    if len(head) != 2:
        raise WeightsError(f"{source}: head.weight has shape {head}, expected a Linear weight")
    num_classes = head[1] if paddle_layout else head[0]
    return Detected(variant, depths, num_conv, int(num_classes))
