"""The official training augmentation (timm's ``create_transform(is_training=True)`` as DeiT calls it).

Order: bicubic RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3) → horizontal flip (0.5) → RandAugment
``rand-m9-mstd0.5-inc1`` *or*, only when no auto-augment is set, colour jitter (timm ignores ``color_jitter``
whenever ``auto_augment`` is given, so with the official config it has no effect) → /255 → normalise →
random erasing (probability 0.25, mode ``pixel``: per-pixel standard-normal values, on the normalised image).

Paddle's ``paddle.vision.transforms`` draw from Python's global ``random``; here every random choice comes from
a ``numpy.random.Generator`` seeded by (seed, epoch, sample index), so an epoch's augmentation is the same
whatever the number of loader workers or processes, and a resumed run sees exactly the images it would have.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageEnhance

from ..errors import DataError
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from .datasets import ImageDataset
from .randaugment import RandAugment
from .transforms import INTERPOLATIONS, check_interpolation, load_rgb


def random_resized_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop: area fraction ~ U(scale), log aspect ~ U(log ratio); ten tries, then
    the centre crop clamped to ``ratio`` (torchvision's / timm's rule)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def color_jitter(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast, saturation factors ~ U(1 − s, 1 + s), applied in random order (no hue)."""
    ops = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    factors = [rng.uniform(max(0.0, 1 - strength), 1 + strength) for _ in ops]
    for i in rng.permutation(len(ops)):
        img = ops[i](img).enhance(factors[i])
    return img


def random_erasing(
    x: np.ndarray,
    rng: np.random.Generator,
    prob: float = 0.25,
    mode: str = "pixel",
    count: int = 1,
    area: tuple[float, float] = (0.02, 1 / 3),
    min_aspect: float = 0.3,
) -> np.ndarray:
    """timm's RandomErasing on a normalised CHW array (in place): with probability ``prob``, n boxes of area
    fraction ~ U(area)/n and log aspect ~ U(log 0.3, log 1/0.3) get N(0, 1) values (``pixel``), one N(0, 1)
    colour per channel (``rand``) or zeros (``const``). ``count`` is timm's ``max_count`` (``create_transform``
    passes ``re_count`` there, with ``min_count`` 1): n = 1, or n ~ U{1..count} when count > 1."""
    if rng.random() > prob:
        return x
    chans, height, width = x.shape
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    if count > 1:
        count = int(rng.integers(1, count + 1))
    for _ in range(count):
        for _attempt in range(10):
            target = rng.uniform(*area) * height * width / count
            aspect = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < width and h < height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                if mode == "pixel":
                    fill = rng.standard_normal((chans, h, w))
                elif mode == "rand":
                    fill = rng.standard_normal((chans, 1, 1))
                else:
                    fill = 0.0
                x[:, top : top + h, left : left + w] = fill
                break
    return x


@dataclass(frozen=True)
class TrainTransform:
    """RGB PIL image + Generator → augmented, normalised float32 CHW array; picklable for loader workers."""

    img_size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"
    hflip: float = 0.5
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float | None = 0.4
    re_prob: float = 0.25
    re_mode: str = "pixel"
    re_count: int = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        check_interpolation(self.interpolation)
        if self.re_mode not in ("pixel", "rand", "const"):
            raise ValueError(f"re_mode {self.re_mode!r}: choose pixel, rand or const")
        if self.auto_augment:
            self.randaugment  # noqa: B018 -- parse now, so a bad string fails before training starts

    @property
    def randaugment(self) -> RandAugment | None:
        if not self.auto_augment:
            return None
        return RandAugment.from_string(self.auto_augment, self.mean, self.interpolation)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (3, self.img_size, self.img_size)

    def augment(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """The PIL part: crop, flip, RandAugment or colour jitter."""
        top, left, h, w = random_resized_crop_box(img.width, img.height, rng, self.scale, self.ratio)
        # crop, then resize (as torchvision does; PIL's resize(box=...) would blend in pixels beyond the box)
        box = (left, top, left + w, top + h)
        img = img.crop(box).resize((self.img_size, self.img_size), INTERPOLATIONS[self.interpolation])
        if self.hflip > 0 and rng.random() < self.hflip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        ra = self.randaugment
        if ra is not None:
            img = ra(img, rng)
        elif self.color_jitter:
            img = color_jitter(img, self.color_jitter, rng)
        return img

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> np.ndarray:
        x = np.asarray(self.augment(img, rng), dtype=np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
        if self.re_prob > 0:
            random_erasing(x, rng, self.re_prob, self.re_mode, self.re_count)
        return x

    def describe(self) -> dict:
        return asdict(self)


class SeededImageDataset(ImageDataset):
    """ImageDataset whose random transform draws from a Generator seeded by (seed, epoch, index, repeat).

    Call ``set_epoch(e)`` before iterating a loader over it (workers are forked per epoch and copy it).
    """

    def __init__(self, samples, transform: TrainTransform, seed: int = 0) -> None:
        super().__init__(samples, transform)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int, repeat: int = 0) -> np.ndarray:
        path = self.samples.paths[index]
        img = load_rgb(path)
        rng = np.random.default_rng([self.seed, self.epoch, index, repeat])
        try:
            return self.transform(img, rng)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot transform image ({exc})") from None

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[np.ndarray, int, int]:
        """``key``: an index, or (index, repeat) from repeated augmentation (each copy augmented differently)."""
        index, repeat = (int(key[0]), int(key[1])) if isinstance(key, tuple | list) else (int(key), 0)
        return self.load(index, repeat), self.samples.labels[index], index
