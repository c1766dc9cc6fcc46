"""The official evaluation preprocessing, pixel for pixel (docs/model.md "Evaluation protocol").

The official code runs torchvision's ``Resize(int(S / crop_pct), BICUBIC)``, ``CenterCrop(S)``, ``ToTensor()``,
``Normalize(mean, std)`` on ``Image.open(f).convert('RGB')``. This module re-states those rules on PIL alone:

- decode with PIL and ``.convert('RGB')`` — no EXIF rotation, palette/CMYK/16-bit/alpha handled by PIL's convert;
- shorter side → R, longer side ``int(R * long / short)``; an image already of that size is left untouched;
- ``Image.resize`` with PIL's bicubic (or bilinear) filter, no ``reducing_gap``;
- centre crop at ``top = int(round((h - S) / 2))`` (Python's round: half to even), ``left`` likewise; an image
  smaller than the crop is first zero-padded by ``(S - h) // 2`` before and ``(S - h + 1) // 2`` after;
- uint8 HWC → float32 CHW ``/ 255``, then ``(x - mean) / std`` in float32.

``EvalTransform.crop`` returns the uint8 crop (what the identity test compares); calling the transform returns the
normalised array the model takes. Pillow's resampling is not bit-stable across releases: record
``pillow_version()`` with results.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from ..errors import DataError
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD

# Pillow only warns for an image between its pixel limit and twice that (a 144 MP photo): an error instead, so such an
# image gets the one-line "cannot read image" (or is skipped with --skip-bad) like a larger one, never a raw warning
# on stderr followed by gigabytes of decoding.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
IMAGE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def check_interpolation(name: str) -> None:
    """ValueError unless ``name`` is one of the supported PIL filters."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation {name!r}: choose one of {', '.join(INTERPOLATIONS)}")


def pillow_version() -> str:
    import PIL

    return PIL.__version__


def check_pixels(img: Image.Image) -> None:
    """Pillow's decompression-bomb limit as an error even where warnings are filtered otherwise (an application
    that embeds the package, pytest)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and img.width * img.height > limit:
        raise Image.DecompressionBombError(
            f"Image size ({img.width * img.height} pixels) exceeds limit of {limit} pixels, "
            "could be decompression bomb DOS attack."
        )


def open_regular(path: str | os.PathLike, what: str = "image"):
    """``path`` opened for binary reading, only if it is a regular file: a FIFO, device or socket named like an
    image is never read (opening a FIFO blocks until a writer comes; a device never ends). The one input opener
    (shunted/fileio.py ``open_input``), its refusal worded for an image or label: a DataError naming the file."""
    from ..fileio import InputError, open_input

    try:
        return open_input(path)
    except InputError as exc:
        reason = str(exc).split(": ", 1)[-1].split(";")[0]
        raise DataError(f"{path}: cannot read {what} ({reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """``Image.open(path).convert('RGB')``, fully decoded; any failure is a DataError naming the file (a file that
    is not a regular one is never opened: ``open_regular``)."""
    with open_regular(path) as fh:
        return _decode_rgb(path, fh)


def _decode_rgb(path, fh) -> Image.Image:
    try:
        with Image.open(fh) as img:
            check_pixels(img)
            return img.convert("RGB")
    except IMAGE_ERRORS as exc:
        raise DataError(f"{path}: cannot read image ({pil_error_text(exc, fh, path)})") from None


def pil_error_text(exc: BaseException, fh, path) -> str:
    """Pillow's message on one line, naming the path (it names the file object it was given: ``open_regular``)."""
    text = str(exc).replace(repr(fh), repr(os.fspath(path)))
    return " ".join(text.split()) or type(exc).__name__


def resize_shorter_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(new_width, new_height) with the shorter side ``size`` and the longer ``int(size * long / short)``."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_offsets(width: int, height: int, crop: int) -> tuple[int, int]:
    """(left, top) of the crop window in image coordinates; negative where the image is zero-padded."""

    def offset(extent: int) -> int:
        if crop > extent:
            return -((crop - extent) // 2)
        return int(round((extent - crop) / 2.0))

    return offset(width), offset(height)


def resize_shorter(img: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    new_size = resize_shorter_size(img.width, img.height, size)
    if new_size == img.size:
        return img
    return img.resize(new_size, INTERPOLATIONS[interpolation])


def center_crop(img: Image.Image, crop: int) -> np.ndarray:
    """The ``crop``×``crop`` centre of an RGB image as uint8 HWC (zero where the image does not reach)."""
    left, top = center_crop_offsets(img.width, img.height, crop)
    if left >= 0 and top >= 0:
        return np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    arr = np.asarray(img, dtype=np.uint8)
    out = np.zeros((crop, crop, arr.shape[2]), dtype=np.uint8)
    src_y, src_x = max(top, 0), max(left, 0)
    dst_y, dst_x = max(-top, 0), max(-left, 0)
    h = min(crop - dst_y, img.height - src_y)
    w = min(crop - dst_x, img.width - src_x)
    out[dst_y : dst_y + h, dst_x : dst_x + w] = arr[src_y : src_y + h, src_x : src_x + w]
    return out


@functools.lru_cache(maxsize=8)
def _normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(channels, 256) float32: ``(v / 255 − mean[c]) / std[c]`` for every uint8 ``v``, by the same float32
    operations as ``normalize``'s formula, hence the same bits."""
    values = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    return (values - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]


def normalize(img: np.ndarray, mean, std) -> np.ndarray:
    """H×W×C → contiguous float32 C×H×W, ``(x / 255 − mean) / std`` per channel, in float32.

    A uint8 image (every image the pipelines make) is looked up in a 256-entry table per channel, computed by
    the formula itself: the same bits in one pass over the pixels instead of four (0.17 ms instead of 0.82 ms
    at 224², most of the preprocessing of a small image). Any other dtype goes through the formula.
    """
    img = np.asarray(img)
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == len(mean) == len(std):
        table = _normalize_table(tuple(float(m) for m in mean), tuple(float(s) for s in std))
        out = np.empty((img.shape[2], *img.shape[:2]), np.float32)
        for c in range(img.shape[2]):
            out[c] = table[c][img[:, :, c]]
        return out
    x = img.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@dataclass(frozen=True)
class EvalTransform:
    """Decode → resize shorter side → centre crop → /255 → normalise; picklable (used in loader workers)."""

    img_size: int = 224
    resize_short: int = 256
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        check_interpolation(self.interpolation)
        if self.img_size < 1 or self.resize_short < 1:
            raise ValueError(
                f"img_size {self.img_size} and resize_short {self.resize_short} must be positive"
            )

    @classmethod
    def from_config(
        cls,
        cfg,
        img_size: int | None = None,
        crop_pct: float | None = None,
        resize_short: int | None = None,
        interpolation: str | None = None,
    ) -> EvalTransform:
        """Defaults from a ``PretrainedConfig``; ``resize_short`` wins over ``crop_pct`` (R = int(S / crop_pct))."""
        size = img_size or cfg.input_size[-1]
        if resize_short is None:
            resize_short = int(size / (crop_pct or cfg.crop_pct))
        return cls(
            img_size=size,
            resize_short=resize_short,
            interpolation=interpolation or cfg.interpolation,
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
        )

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (3, self.img_size, self.img_size)

    def crop(self, img: Image.Image) -> np.ndarray:
        """The uint8 HWC crop of an RGB image (before scaling and normalisation)."""
        return center_crop(resize_shorter(img, self.resize_short, self.interpolation), self.img_size)

    def normalize(self, crop: np.ndarray) -> np.ndarray:
        return normalize(crop, self.mean, self.std)

    def __call__(self, img: Image.Image) -> np.ndarray:
        return self.normalize(self.crop(img))

    def load(self, path: str | os.PathLike) -> np.ndarray:
        return self(load_rgb(path))

    def describe(self) -> dict:
        """The preprocessing as recorded in results (with the Pillow version that ran it)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d.update(
            decode="PIL Image.open(f).convert('RGB'), EXIF orientation ignored",
            resize=f"shorter side -> {self.resize_short}, longer int({self.resize_short}*long/short), "
            f"PIL {self.interpolation}",
            crop=f"center {self.img_size}x{self.img_size}, top=int(round((h-{self.img_size})/2))",
            pillow=pillow_version(),
        )
        return d
