"""Segmentation transforms: mmseg's / PaddleSeg's training augmentation and the full-resolution evaluation input.

Training (``SegTrainTransform``), in mmseg's pipeline order (``configs/_base_/datasets/*.py`` of mmseg 0.x:
Resize → RandomCrop → RandomFlip → PhotoMetricDistortion → Normalize → Pad):

1. **random rescale**: ratio r ~ U(scale_range); the image is resized keeping its aspect ratio by
   ``f = r · min(max(bw, bh) / max(w, h), min(bw, bh) / min(w, h))`` with ``(bw, bh) = base_size`` (mmcv's
   ``imrescale`` of mmseg's ``Resize(img_scale=base, ratio_range=...)``); without ``base_size`` the image's own
   size, i.e. ``f = r`` (PaddleSeg's ``ResizeStepScaling``). New size ``int(w·f + 0.5)`` × ``int(h·f + 0.5)``.
   The image is resized bilinearly; **the label only with nearest neighbour** (PIL ``NEAREST``) — interpolating
   class indices would invent classes at boundaries.
2. **random crop** of ``crop_size`` (h, w) (the whole extent on a side shorter than the crop) with mmseg's
   category-ratio rule (``RandomCrop(cat_max_ratio=0.75)``): a crop is rejected when its label has a single
   non-ignored class or one class covers ≥ ``cat_max_ratio`` of its non-ignored pixels; up to 10 tries, after which
   the next drawn crop is used unchecked (as mmseg does). ``cat_max_ratio >= 1`` disables the rule.
3. **horizontal flip** of image and label together with probability ``flip_prob``.
4. **photometric distortion** (mmseg's ``PhotoMetricDistortion``), each step with probability ½, uint8 between
   steps: brightness + U(−32, 32); contrast × U(0.5, 1.5) either first or last (random mode); saturation ×
   U(0.5, 1.5) in HSV; hue + U{−18..17} in OpenCV's 0..180 hue units (±36°; mmseg draws with numpy's
   ``randint``, which excludes the upper end). HSV here is PIL's (uint8, a turn of hue = 256 units, the shift
   rounded to those units) instead of OpenCV's, so values can differ from mmseg's by rounding, not in
   distribution.
5. **normalise**: ``(x / 255 − mean) / std`` in float32, mean/std in 0–1 units as the classification transforms
   (``shunted/data/transforms.py``; ImageNet's by default).
6. **pad** bottom/right to the crop size: image with 0 (after normalisation, as mmseg's ``Pad`` /
   ``SegDataPreProcessor`` — the mean colour), label with ``ignore_index`` so padding never counts in the loss.

Every random draw comes from the ``numpy.random.Generator`` passed in (``SegDataset`` seeds it by
(seed, epoch, index)), so an epoch's augmentation is the same whatever the number of loader workers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from .transforms import normalize

CAT_RATIO_TRIES = 10


def rescaled_size(
    width: int, height: int, ratio: float, base_size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """(new_width, new_height) of a keep-ratio rescale by ``ratio`` relative to ``base_size`` (w, h) (see step 1)."""
    if base_size is None:
        factor = ratio
    else:
        bw, bh = base_size
        factor = ratio * min(max(bw, bh) / max(width, height), min(bw, bh) / min(width, height))
    return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 H×W class-index label resized to ``size`` (w, h) with nearest neighbour only."""
    if (label.shape[1], label.shape[0]) == tuple(size):
        return label
    return np.asarray(Image.fromarray(label).resize(size, Image.Resampling.NEAREST))


def _crop_box(
    height: int, width: int, crop: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    margin_h, margin_w = max(height - crop[0], 0), max(width - crop[1], 0)
    top = int(rng.integers(0, margin_h + 1))
    left = int(rng.integers(0, margin_w + 1))
    return top, left, min(crop[0], height), min(crop[1], width)


def cat_ratio_ok(label: np.ndarray, cat_max_ratio: float, ignore_index: int) -> bool:
    """mmseg's acceptance test: at least two non-ignored classes, the largest covering < ``cat_max_ratio``."""
    if label.dtype == np.uint8:
        counts = np.bincount(label.ravel(), minlength=256)
        if 0 <= ignore_index < 256:
            counts[ignore_index] = 0
        counts = counts[counts > 0]
    else:
        values, counts = np.unique(label, return_counts=True)
        counts = counts[values != ignore_index]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def random_crop_box(
    label: np.ndarray,
    crop_size: tuple[int, int],
    rng: np.random.Generator,
    cat_max_ratio: float = 0.75,
    ignore_index: int = 255,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop of ``label`` under the category-ratio rule (module docstring, step 2)."""
    height, width = label.shape
    box = _crop_box(height, width, crop_size, rng)
    if cat_max_ratio < 1.0:
        for _ in range(CAT_RATIO_TRIES):
            top, left, h, w = box
            if cat_ratio_ok(label[top : top + h, left : left + w], cat_max_ratio, ignore_index):
                break
            box = _crop_box(height, width, crop_size, rng)
    return box


def _convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def _hsv_channels(img: np.ndarray) -> list[np.ndarray]:
    """uint8 RGB → [H, S, V] uint8 planes (PIL's HSV: a full turn of hue is 256 units)."""
    hsv = np.asarray(Image.fromarray(img).convert("HSV"))
    return [hsv[..., 0], hsv[..., 1], hsv[..., 2]]


def _from_hsv(planes: list[np.ndarray]) -> np.ndarray:
    return np.asarray(Image.merge("HSV", [Image.fromarray(p) for p in planes]).convert("RGB"))


def photometric_distortion(
    img: np.ndarray,
    rng: np.random.Generator,
    brightness_delta: int = 32,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """mmseg's ``PhotoMetricDistortion`` on uint8 RGB H×W×3 (module docstring, step 4)."""
    if rng.integers(2):
        img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    contrast_last = int(rng.integers(2)) == 0  # mmseg's mode: 0 -> contrast last, 1 -> contrast first
    if not contrast_last and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast_range))
    if rng.integers(2):
        h, sat, v = _hsv_channels(img)
        img = _from_hsv([h, _convert(sat, alpha=rng.uniform(*saturation_range)), v])
    if rng.integers(2):
        h, sat, v = _hsv_channels(img)
        shift = int(
            rng.integers(-hue_delta, hue_delta)
        )  # OpenCV hue units (2 degrees); numpy's randint range
        h = ((h.astype(np.int32) + int(round(shift * 256 / 180))) % 256).astype(np.uint8)
        img = _from_hsv([h, sat, v])
    if contrast_last and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast_range))
    return img


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        value = (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{name} must be a positive size or (h, w) pair, not {value}")
    return value


@dataclass(frozen=True)
class SegTrainTransform:
    """(RGB PIL image, uint8 label, Generator) → (float32 3×h×w, int64 h×w); see the module docstring."""

    crop_size: tuple[int, int] = (512, 512)  # (h, w)
    scale_range: tuple[float, float] = (0.5, 2.0)
    base_size: tuple[int, int] | None = None  # (w, h); None: the image's own size
    cat_max_ratio: float = 0.75
    ignore_index: int = 255
    flip_prob: float = 0.5
    photometric: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_size", _pair(self.crop_size, "crop_size"))
        if self.base_size is not None:
            object.__setattr__(self, "base_size", _pair(self.base_size, "base_size"))
        lo, hi = (float(v) for v in self.scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be 0 < low <= high, not {self.scale_range}")
        object.__setattr__(self, "scale_range", (lo, hi))
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], not {self.flip_prob}")
        if not 0 <= self.ignore_index <= 255:
            raise ValueError(f"ignore_index must be in 0..255 (labels are 8-bit), not {self.ignore_index}")

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (3, *self.crop_size)

    def __call__(
        self, image: Image.Image, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        label = np.asarray(label, dtype=np.uint8)
        if label.shape != (image.height, image.width):
            raise ValueError(
                f"label size {label.shape[1]}×{label.shape[0]} differs from image size {image.width}×{image.height}"
            )
        # 1. random rescale: image bilinear, label nearest
        ratio = float(rng.uniform(*self.scale_range))
        size = rescaled_size(image.width, image.height, ratio, self.base_size)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BILINEAR)
            label = resize_label(label, size)
        img = np.asarray(image.convert("RGB"), dtype=np.uint8)
        # 2. random crop, category-ratio rule
        top, left, h, w = random_crop_box(label, self.crop_size, rng, self.cat_max_ratio, self.ignore_index)
        img = img[top : top + h, left : left + w]
        label = label[top : top + h, left : left + w]
        # 3. flip both
        if self.flip_prob > 0 and rng.random() < self.flip_prob:
            img, label = img[:, ::-1], label[:, ::-1]
        # 4. photometric distortion (image only)
        if self.photometric:
            img = photometric_distortion(np.ascontiguousarray(img), rng)
        # 5. normalise, 6. pad bottom/right: image 0, label ignore_index
        x = normalize(img, self.mean, self.std)
        ch, cw = self.crop_size
        out = np.zeros((3, ch, cw), np.float32)
        out[:, :h, :w] = x
        y = np.full((ch, cw), self.ignore_index, np.int64)
        y[:h, :w] = label
        return out, y

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SegEvalTransform:
    """RGB PIL image → float32 3×H'×W', the whole image normalised; ``scale`` resizes it (bilinear) by that factor
    for reduced-resolution runs (metrics are computed at the label's size: logits are resized back)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"scale must be positive, not {self.scale}")

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) of the network input for an image of ``width``×``height``."""
        if self.scale is None or self.scale == 1:
            return width, height
        return rescaled_size(width, height, float(self.scale))

    def __call__(self, image: Image.Image) -> np.ndarray:
        size = self.input_size(image.width, image.height)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        return normalize(np.asarray(image.convert("RGB"), dtype=np.uint8), self.mean, self.std)

    def describe(self) -> dict:
        return asdict(self)
