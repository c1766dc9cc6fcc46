"""Detection transforms (mmdet's ``retinanet_r50_fpn_1x`` pipeline): keep-ratio resize, flip, normalise, pad to 32.

1. **resize** keeping the aspect ratio to fit ``img_scale`` (W, H) (default 1333 × 800): factor
   ``f = min(max(W, H) / max(w, h), min(W, H) / min(w, h))``, new size ``int(w·f + 0.5)`` × ``int(h·f + 0.5)``
   (mmcv ``imrescale``, as ``seg_transforms.rescaled_size``), PIL bilinear; boxes × (new_w / w, new_h / h)
   (mmdet's per-axis ``scale_factor``, which the predictions are divided by to return to the original pixels);
2. **horizontal flip** with probability ``flip_prob`` (0.5 in training, 0 for evaluation): x1' = W' − x2,
   x2' = W' − x1 (mmdet 2.x, no −1);
3. **normalise** ``(x / 255 − mean) / std`` (ImageNet's = mmdet's ``[123.675, 116.28, 103.53] / [58.395, 57.12,
   57.375]`` on RGB);
4. **pad** bottom/right with 0 to a multiple of 32 — per batch in :func:`collate_detection`, to the batch's
   largest image; each image keeps its own padded size (``pad_shape``) for the loss's valid anchors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from ..models.registry import DET_IMG_SCALE, IMAGENET_MEAN, IMAGENET_STD
from .seg_transforms import rescaled_size
from .transforms import normalize

__all__ = ["DetTransform", "collate_detection", "pad_to"]

SIZE_DIVISOR = 32


def pad_to(n: int, divisor: int = SIZE_DIVISOR) -> int:
    return -(-int(n) // divisor) * divisor


@dataclass(frozen=True)
class DetTransform:
    """(RGB PIL image, boxes (G, 4), Generator) → (float32 3×h×w, boxes (G, 4) float32, info); see the docstring.

    info: ``orig_size`` (h, w), ``image_shape`` (h, w) after the resize, ``pad_shape`` (h, w) padded to 32,
    ``scale_factor`` (w_scale, h_scale), ``flipped``."""

    img_scale: tuple[int, int] = DET_IMG_SCALE  # (W, H)
    flip_prob: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        scale = tuple(int(v) for v in self.img_scale)
        if len(scale) != 2 or min(scale) < 1:
            raise ValueError(f"img_scale must be two positive sizes (W H), not {self.img_scale}")
        object.__setattr__(self, "img_scale", scale)
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], not {self.flip_prob}")

    def __call__(self, image: Image.Image, boxes: np.ndarray, rng: np.random.Generator | None = None):
        width, height = image.size
        new_w, new_h = rescaled_size(width, height, 1.0, self.img_scale)
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        scale = np.array([new_w / width, new_h / height] * 2, dtype=np.float32)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale
        img = np.asarray(image.convert("RGB"), dtype=np.uint8)
        flipped = bool(self.flip_prob > 0 and rng is not None and rng.random() < self.flip_prob)
        if flipped:
            img = img[:, ::-1]
            boxes = np.stack([new_w - boxes[:, 2], boxes[:, 1], new_w - boxes[:, 0], boxes[:, 3]], axis=1)
        info = {
            "orig_size": (height, width),
            "image_shape": (new_h, new_w),
            "pad_shape": (pad_to(new_h), pad_to(new_w)),
            "scale_factor": (float(scale[0]), float(scale[1])),
            "flipped": flipped,
        }
        return normalize(np.ascontiguousarray(img), self.mean, self.std), boxes.astype(np.float32), info

    def describe(self) -> dict:
        return asdict(self)


def collate_detection(batch: list) -> tuple[np.ndarray, list, list, list]:
    """[(image, boxes, labels, info)] → (images B×3×H×W padded with 0 to the batch's largest size, a multiple of
    32; boxes list; labels list; info list)."""
    height = pad_to(max(x.shape[1] for x, *_ in batch))
    width = pad_to(max(x.shape[2] for x, *_ in batch))
    images = np.zeros((len(batch), 3, height, width), dtype=np.float32)
    for i, (x, *_rest) in enumerate(batch):
        images[i, :, : x.shape[1], : x.shape[2]] = x
    return images, [b for _, b, _, _ in batch], [lab for _, _, lab, _ in batch], [info for *_, info in batch]
