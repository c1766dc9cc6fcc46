"""RandAugment as the official recipe runs it: timm's ``rand-m9-mstd0.5-inc1`` (what Paddle lacks).

timm's semantics, re-stated (timm/data/auto_augment.py):

- ``rand-m{M}-n{N}-mstd{S}-inc{0|1}-p{P}``: magnitude M (the recipe: 9), N ops per image (default 2), chosen
  uniformly *with replacement*; each op runs with probability P (default 0.5);
- each time an op runs its magnitude is drawn from Normal(M, S) and clipped to [0, 10];
- ``inc1`` selects the "increasing" op set, where a larger magnitude is always a stronger change:
  AutoContrast, Equalize, Invert, Rotate, PosterizeIncreasing, SolarizeIncreasing, SolarizeAdd, ColorIncreasing,
  ContrastIncreasing, BrightnessIncreasing, SharpnessIncreasing, ShearX, ShearY, TranslateXRel, TranslateYRel;
- magnitude m → argument (signed ops flip sign with probability 0.5): Rotate 30·m/10 degrees; Shear 0.3·m/10;
  Translate 0.45·m/10 of the image side; enhance factor 1 ± 0.9·m/10; Posterize keeps 4 − int(4·m/10) bits
  (0 bits at m = 10: a black image, as Pillow ≤ 12 made it; Pillow 13 refuses 0 bits, so it is done here);
  Solarize threshold 256 − int(256·m/10); SolarizeAdd adds int(110·m/10) below 128;
- geometric ops fill with the mean colour (round(255·mean)) and resample with the training interpolation.

All randomness comes from the ``numpy.random.Generator`` passed in, so augmentation is reproducible per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ..models.registry import IMAGENET_MEAN

MAX_LEVEL = 10.0

INCREASING_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
# timm's default (non-increasing) set; with these, some magnitudes weaken the change as they grow.
DEFAULT_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
SIGNED_OPS = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"} | {
    f"{n}Increasing" for n in ("Color", "Contrast", "Brightness", "Sharpness")
}


def op_argument(name: str, magnitude: float, translate_pct: float = 0.45) -> float | int | None:
    """The unsigned argument of op ``name`` at ``magnitude`` (0..10); None for ops without one."""
    m = magnitude / MAX_LEVEL
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return 30.0 * m
    if name in ("ShearX", "ShearY"):
        return 0.3 * m
    if name in ("TranslateXRel", "TranslateYRel"):
        return translate_pct * m
    if name.endswith("Increasing") and name[: -len("Increasing")] in (
        "Color",
        "Contrast",
        "Brightness",
        "Sharpness",
    ):
        return 0.9 * m  # factor 1 ± this
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return 1.8 * m + 0.1  # factor in [0.1, 1.9], decreasing strength around 1
    if name == "Posterize":
        return int(4 * m)
    if name == "PosterizeIncreasing":
        return 4 - int(4 * m)
    if name == "Solarize":
        return int(256 * m)
    if name == "SolarizeIncreasing":
        return 256 - int(256 * m)
    if name == "SolarizeAdd":
        return int(110 * m)
    raise ValueError(f"unknown RandAugment op {name!r}")


def _affine(img: Image.Image, matrix: tuple, fill: tuple, resample: int) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=fill)


def _enhance(kind: Callable) -> Callable:
    return lambda img, factor, **_: kind(img).enhance(factor)


def _solarize_add(img: Image.Image, add: int, **_) -> Image.Image:
    lut = [min(255, i + add) if i < 128 else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def _posterize(img: Image.Image, bits: int, **_) -> Image.Image:
    """Keep the top ``bits`` bits of each channel (value & ~(2**(8 - bits) - 1)).

    0 bits (PosterizeIncreasing at the clipped magnitude 10, Posterize at 0) keeps nothing: a black image, which
    is what ``ImageOps.posterize(img, 0)`` returned up to Pillow 12; Pillow 13 refuses 0 bits (ValueError).
    """
    if bits >= 8:
        return img
    if bits <= 0:
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits)


_OPS: dict[str, Callable] = {
    "AutoContrast": lambda img, _a, **_: ImageOps.autocontrast(img),
    "Equalize": lambda img, _a, **_: ImageOps.equalize(img),
    "Invert": lambda img, _a, **_: ImageOps.invert(img),
    "Rotate": lambda img, deg, fill, resample: img.rotate(deg, resample=resample, fillcolor=fill),
    "Posterize": _posterize,
    "PosterizeIncreasing": _posterize,
    "Solarize": lambda img, t, **_: ImageOps.solarize(img, t),
    "SolarizeIncreasing": lambda img, t, **_: ImageOps.solarize(img, t),
    "SolarizeAdd": _solarize_add,
    "Color": _enhance(ImageEnhance.Color),
    "Contrast": _enhance(ImageEnhance.Contrast),
    "Brightness": _enhance(ImageEnhance.Brightness),
    "Sharpness": _enhance(ImageEnhance.Sharpness),
    "ShearX": lambda img, s, fill, resample: _affine(img, (1, s, 0, 0, 1, 0), fill, resample),
    "ShearY": lambda img, s, fill, resample: _affine(img, (1, 0, 0, s, 1, 0), fill, resample),
    "TranslateXRel": lambda img, p, fill, resample: _affine(
        img, (1, 0, p * img.size[0], 0, 1, 0), fill, resample
    ),
    "TranslateYRel": lambda img, p, fill, resample: _affine(
        img, (1, 0, 0, 0, 1, p * img.size[1]), fill, resample
    ),
}
for _name in ("Color", "Contrast", "Brightness", "Sharpness"):
    _OPS[f"{_name}Increasing"] = _OPS[_name]


@dataclass(frozen=True)
class RandAugment:
    """``num_ops`` random ops per image, each with probability ``prob`` and magnitude ~ N(magnitude, std)."""

    magnitude: float = 9.0
    magnitude_std: float = 0.5
    num_ops: int = 2
    prob: float = 0.5
    increasing: bool = True
    fill: tuple[int, int, int] = (124, 116, 104)
    interpolation: str = "bicubic"
    translate_pct: float = 0.45

    @classmethod
    def from_string(
        cls, config: str, mean: tuple[float, ...] = IMAGENET_MEAN, interpolation: str = "bicubic"
    ) -> RandAugment:
        """Parse timm's ``rand-m9-mstd0.5-inc1`` (keys m, n, mstd, inc, p); fill = round(255 · mean)."""
        parts = config.split("-")
        if parts[0] != "rand":
            raise ValueError(f"auto_augment {config!r}: only RandAugment ('rand-...') is supported")
        kw: dict = {"fill": tuple(min(255, round(255 * c)) for c in mean), "interpolation": interpolation}
        kw["increasing"] = False  # timm: the default op set unless the string says inc1
        for part in parts[1:]:
            for key, field, conv in (
                ("mstd", "magnitude_std", float),
                ("inc", "increasing", lambda v: bool(int(v))),
                ("m", "magnitude", float),
                ("n", "num_ops", int),
                ("p", "prob", float),
            ):
                if part.startswith(key):
                    kw[field] = conv(part[len(key) :])
                    break
            else:
                raise ValueError(f"auto_augment {config!r}: unknown part {part!r}")
        return cls(**kw)

    @property
    def ops(self) -> tuple[str, ...]:
        return INCREASING_OPS if self.increasing else DEFAULT_OPS

    def sample_magnitude(self, rng: np.random.Generator) -> float:
        m = self.magnitude
        if self.magnitude_std == float("inf"):
            m = rng.uniform(0, m)
        elif self.magnitude_std > 0:
            m = rng.normal(m, self.magnitude_std)
        return float(min(MAX_LEVEL, max(0.0, m)))

    def apply_op(self, img: Image.Image, name: str, magnitude: float, negate: bool = False) -> Image.Image:
        """Op ``name`` at a fixed magnitude (``negate`` flips the sign of signed ops)."""
        arg = op_argument(name, magnitude, self.translate_pct)
        if name in SIGNED_OPS and negate:
            arg = -arg
        if name.endswith("Increasing") and name != "PosterizeIncreasing" and name != "SolarizeIncreasing":
            arg = 1.0 + arg
        resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[
            self.interpolation
        ]
        return _OPS[name](img, arg, fill=self.fill, resample=resample)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        for i in rng.integers(0, len(self.ops), size=self.num_ops):
            if self.prob < 1.0 and rng.random() > self.prob:
                continue
            name = self.ops[int(i)]
            img = self.apply_op(img, name, self.sample_magnitude(rng), negate=bool(rng.random() < 0.5))
        return img
