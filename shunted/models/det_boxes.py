"""RetinaNet's box logic in numpy: anchors, IoU, box coding, target assignment, post-processing.

The setting of mmdet's ``retinanet_r50_fpn_1x`` (the one PVT v2's detection config, and so the Shunted paper,
uses); README "Detection" lists every point where mmdet and torchvision differ and which one is followed:

- anchors (mmdet ``AnchorGenerator``): strides 8–128, octave base scale 4 with 3 scales per octave (sizes 32–512 ×
  2^(0, 1/3, 2/3)), ratios h/w 0.5 / 1 / 2, centred on ``(x·stride, y·stride)`` (offset 0), not rounded;
  per place ratio-major (``ws = (w_ratios[:, None] * scales[None, :]).ravel()``), places row-major;
- box coding (``DeltaXYWHBBoxCoder``, means 0, stds 1): width = x2 − x1 (no +1), centre x1 + w/2; decoding clamps
  dw, dh to ±log(1000/16) and clips to the image;
- assignment (``MaxIoUAssigner``): IoU ≥ 0.5 positive, < 0.4 negative, in between ignored; then every gt takes the
  anchors of its highest IoU (ties included, a later gt overwriting an earlier one); anchors whose place lies
  in the batch padding beyond the image's own padded size are left out (``valid_flags``);
- inference: per level sigmoid scores > 0.05, the top 1000 (anchor, class) pairs, decode, clip; class-wise NMS at
  IoU 0.5 over all levels; the best 100 per image.

Pure numpy (float32 where the network's outputs are, float64 for NMS overlaps): the same code post-processes the
dygraph model and the raw outputs of an exported one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AnchorConfig",
    "PostprocessConfig",
    "assign",
    "base_anchors",
    "box_iou",
    "decode",
    "encode",
    "grid_anchors",
    "level_sizes",
    "multilevel_anchors",
    "nms",
    "postprocess",
    "valid_flags",
]

BBOX_XFORM_CLIP = abs(math.log(16.0 / 1000.0))  # mmdet's max_ratio, torchvision's bbox_xform_clip


@dataclass(frozen=True)
class AnchorConfig:
    """mmdet ``AnchorGenerator(octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1, 2], strides=[8..128])``."""

    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    octave_base_scale: float = 4.0
    scales_per_octave: int = 3
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)

    @property
    def num_anchors(self) -> int:
        return self.scales_per_octave * len(self.ratios)

    def scales(self) -> np.ndarray:
        return self.octave_base_scale * 2.0 ** (np.arange(self.scales_per_octave) / self.scales_per_octave)


@dataclass(frozen=True)
class AssignConfig:
    pos_iou: float = 0.5
    neg_iou: float = 0.4
    min_pos_iou: float = 0.0  # low-quality matches: a gt whose best IoU is at least this takes those anchors


@dataclass(frozen=True)
class PostprocessConfig:
    score_threshold: float = 0.05
    pre_nms_top_k: int = 1000  # per level
    nms_iou: float = 0.5
    max_per_image: int = 100


ANCHORS = AnchorConfig()
POSTPROCESS = PostprocessConfig()


def base_anchors(stride: int, cfg: AnchorConfig = AnchorConfig()) -> np.ndarray:
    """The (A, 4) anchors of one place at the origin, ratio-major then scale (mmdet ``gen_single_level_base_anchors``)."""
    ratios = np.asarray(cfg.ratios, dtype=np.float64)
    h_ratios = np.sqrt(ratios)
    w_ratios = 1.0 / h_ratios
    ws = (stride * w_ratios[:, None] * cfg.scales()[None, :]).ravel()
    hs = (stride * h_ratios[:, None] * cfg.scales()[None, :]).ravel()
    return np.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], axis=1).astype(np.float32)


def grid_anchors(base: np.ndarray, size: tuple[int, int], stride: int) -> np.ndarray:
    """(H·W·A, 4): every place (row-major) × every base anchor, shifted by ``(x·stride, y·stride)``."""
    height, width = size
    shift_x = np.arange(width, dtype=np.float32) * stride
    shift_y = np.arange(height, dtype=np.float32) * stride
    yy, xx = np.meshgrid(shift_y, shift_x, indexing="ij")
    shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], axis=1)
    return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)


def level_sizes(
    height: int, width: int, strides: Sequence[int] = AnchorConfig.strides
) -> list[tuple[int, int]]:
    """Feature sizes of the pyramid for a padded input (H, W multiples of 32): H/s at strides ≤ 32, then each
    extra level a 3×3 stride-2 conv with padding 1 of the one before (``ceil(n / 2)``)."""
    sizes = []
    for stride in strides:
        if stride <= 32:
            sizes.append((height // stride, width // stride))
        else:
            h, w = sizes[-1]
            sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def multilevel_anchors(
    sizes: Sequence[tuple[int, int]], cfg: AnchorConfig = AnchorConfig()
) -> list[np.ndarray]:
    """Anchors of every level for these feature sizes."""
    return [grid_anchors(base_anchors(s, cfg), size, s) for s, size in zip(cfg.strides, sizes, strict=True)]


def valid_flags(
    sizes: Sequence[tuple[int, int]], pad_shape: tuple[int, int], cfg: AnchorConfig = AnchorConfig()
) -> np.ndarray:
    """(N_total,) bool: anchors whose place lies inside this image's own padded size (mmdet ``valid_flags``)."""
    flags = []
    for stride, (fh, fw) in zip(cfg.strides, sizes, strict=True):
        vh = min(int(math.ceil(pad_shape[0] / stride)), fh)
        vw = min(int(math.ceil(pad_shape[1] / stride)), fw)
        place = (np.arange(fh)[:, None] < vh) & (np.arange(fw)[None, :] < vw)
        flags.append(np.repeat(place.ravel(), cfg.num_anchors))
    return np.concatenate(flags)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1y1x2y2 boxes; width = x2 − x1."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / np.maximum(union, np.finfo(np.float32).eps)


def encode(anchors: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Deltas (dx, dy, dw, dh) of ``gt`` relative to ``anchors`` (mmdet ``bbox2delta``, unit weights)."""
    pw, ph = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    px, py = anchors[:, 0] + 0.5 * pw, anchors[:, 1] + 0.5 * ph
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return np.stack([(gx - px) / pw, (gy - py) / ph, np.log(gw / pw), np.log(gh / ph)], axis=1)


def decode(anchors: np.ndarray, deltas: np.ndarray, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Boxes from deltas (mmdet ``delta2bbox``): dw, dh clamped to ±log(1000/16), clipped to (H, W) if given."""
    pw, ph = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    px, py = anchors[:, 0] + 0.5 * pw, anchors[:, 1] + 0.5 * ph
    dw = np.clip(deltas[:, 2], -BBOX_XFORM_CLIP, BBOX_XFORM_CLIP)
    dh = np.clip(deltas[:, 3], -BBOX_XFORM_CLIP, BBOX_XFORM_CLIP)
    gx, gy = px + pw * deltas[:, 0], py + ph * deltas[:, 1]
    gw, gh = pw * np.exp(dw), ph * np.exp(dh)
    boxes = np.stack([gx - 0.5 * gw, gy - 0.5 * gh, gx + 0.5 * gw, gy + 0.5 * gh], axis=1)
    if image_shape is not None:
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, image_shape[1])
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, image_shape[0])
    return boxes


def assign(anchors: np.ndarray, gt: np.ndarray, cfg: AssignConfig = AssignConfig()) -> np.ndarray:
    """Per anchor: −1 ignored, 0 background, i + 1 matched to gt i (mmdet ``MaxIoUAssigner``, gt_max_assign_all)."""
    assigned = np.full(len(anchors), -1, dtype=np.int64)
    if len(gt) == 0:
        assigned[:] = 0
        return assigned
    overlaps = box_iou(gt, anchors)  # (G, A)
    max_overlaps = overlaps.max(axis=0)
    argmax = overlaps.argmax(axis=0)
    assigned[(max_overlaps >= 0) & (max_overlaps < cfg.neg_iou)] = 0
    positive = max_overlaps >= cfg.pos_iou
    assigned[positive] = argmax[positive] + 1
    gt_max = overlaps.max(axis=1)
    for i in range(len(gt)):  # low-quality matches, in gt order (a later gt wins a shared anchor)
        if gt_max[i] >= cfg.min_pos_iou:
            assigned[overlaps[i] == gt_max[i]] = i + 1
    return assigned


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS: indices kept, by descending score; a box goes when its IoU with a kept one exceeds ``iou``."""
    boxes = boxes.astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        union = areas[i] + areas[rest] - inter
        overlap = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float) -> np.ndarray:
    """NMS within each class; the kept indices of all classes by descending score."""
    keep = [
        np.flatnonzero(labels == c)[nms(boxes[labels == c], scores[labels == c], iou)]
        for c in np.unique(labels)
    ]
    if not keep:
        return np.zeros(0, dtype=np.int64)
    kept = np.concatenate(keep)
    return kept[np.argsort(-scores[kept], kind="stable")]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def postprocess(
    cls_levels: Sequence[np.ndarray],
    reg_levels: Sequence[np.ndarray],
    anchor_levels: Sequence[np.ndarray],
    image_shape: tuple[int, int],
    cfg: PostprocessConfig = PostprocessConfig(),
) -> dict[str, np.ndarray]:
    """One image's detections from its per-level logits (N_l, K) and deltas (N_l, 4): boxes in the input's
    pixels (clipped to ``image_shape`` = the resized image's (H, W) before padding), scores, labels (0-based)."""
    boxes, scores, labels = [], [], []
    for logits, deltas, anchors in zip(cls_levels, reg_levels, anchor_levels, strict=True):
        num_classes = logits.shape[-1]
        flat = _sigmoid(logits.astype(np.float32)).ravel()
        candidates = np.flatnonzero(flat > cfg.score_threshold)
        top = np.argsort(-flat[candidates], kind="stable")[: cfg.pre_nms_top_k]
        candidates = candidates[top]
        anchor_idx = candidates // num_classes
        boxes.append(decode(anchors[anchor_idx], deltas[anchor_idx], image_shape))
        scores.append(flat[candidates])
        labels.append(candidates % num_classes)
    boxes_all, scores_all, labels_all = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
    keep = batched_nms(boxes_all, scores_all, labels_all, cfg.nms_iou)[: cfg.max_per_image]
    return {
        "boxes": boxes_all[keep].astype(np.float32),
        "scores": scores_all[keep].astype(np.float32),
        "labels": labels_all[keep].astype(np.int64),
    }
