"""Colours and pictures of segmentation masks: palettes, class names, the colour mask with a legend, the overlay.

Palettes (``get_palette``): ``voc`` (the default) is the Pascal VOC bit-interleaving palette that PaddleSeg and
mmseg use for datasets without their own colours (class 0 black, 1 dark red, 2 dark green, …; deterministic for
any class count up to 256); ``camvid`` is SegNet's CamVid palette (11 classes + 11 = unlabelled, black), written
here so the package needs no data folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...errors import ShuntedError
from ...fileio import read_input_text

MAX_CLASSES = 256  # index masks are 8-bit PNGs

CAMVID_CLASSES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
# SegNet's display colours (RGB) in class order; index 11 (unlabelled) is black.
CAMVID_COLORS = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
    (0, 0, 0),
)
PALETTES = ("voc", "camvid")


def voc_palette(n: int = MAX_CLASSES) -> np.ndarray:
    """``n`` × 3 uint8: the Pascal VOC colour map (bits of the index spread over R, G, B from the top bit down)."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        out[i] = rgb
    return out


def get_palette(name: str, num_classes: int) -> np.ndarray:
    """``num_classes`` × 3 uint8 colours of palette ``name`` (``voc`` or ``camvid``)."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ShuntedError(f"{num_classes} classes: masks are 8-bit PNGs, at most {MAX_CLASSES} classes")
    if name == "voc":
        return voc_palette(num_classes)
    if name == "camvid":
        if num_classes > len(CAMVID_COLORS):
            raise ShuntedError(
                f"--palette camvid: has {len(CAMVID_COLORS)} colours, the model has {num_classes} classes"
            )
        return np.asarray(CAMVID_COLORS[:num_classes], np.uint8)
    raise ShuntedError(f"--palette {name!r}: choose one of {', '.join(PALETTES)}")


def default_class_names(palette: str, num_classes: int) -> list[str]:
    """CamVid's names for the ``camvid`` palette with 11 classes, else ``class 0``, ``class 1``, …"""
    if palette == "camvid" and num_classes == len(CAMVID_CLASSES):
        return list(CAMVID_CLASSES)
    return [f"class {i}" for i in range(num_classes)]


def read_class_names(path: str | os.PathLike, num_classes: int) -> list[str]:
    """One name per line in class-index order (trailing blank lines ignored); the count must be ``num_classes``."""
    try:
        # a BOM (Windows editors) is not part of a name
        text = read_input_text(path, "names", "--class-names", encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ShuntedError(f"--class-names {path}: not a UTF-8 text file") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for i, line in enumerate(lines, start=1):
        if not line:
            raise ShuntedError(f"--class-names {path}:{i}: empty class name")
    if len(lines) != num_classes:
        raise ShuntedError(
            f"--class-names {path}: {len(lines)} names, but the model has {num_classes} classes"
        )
    return lines


def colorize(mask: np.ndarray, palette: np.ndarray) -> Image.Image:
    """An RGB image of ``mask`` (H×W class indices) in ``palette``'s colours."""
    return Image.fromarray(palette[mask], "RGB")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def legend_strip(
    width: int, classes: Sequence[int], names: Sequence[str], palette: np.ndarray, shares: Sequence[float]
) -> Image.Image:
    """A white strip ``width`` wide listing ``classes`` as a colour swatch, the name and the pixel share, in rows."""
    size = max(10, min(24, width // 40))
    font = _font(size)
    pad, swatch = max(3, size // 3), size
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items = []
    for c, share in zip(classes, shares, strict=True):
        text = f"{names[c]} {share:.0f}%" if share >= 1 else f"{names[c]} <1%"
        items.append((c, text, swatch + pad // 2 + int(np.ceil(measure.textlength(text, font=font)))))
    rows, row, used = [], [], pad
    for item in items:  # flow left to right, wrapping at the width (an entry too wide gets a row of its own)
        if row and used + item[2] > width - pad:
            rows.append(row)
            row, used = [], pad
        row.append(item)
        used += item[2] + 2 * pad
    if row:
        rows.append(row)
    line = swatch + pad
    strip = Image.new("RGB", (width, pad + line * max(1, len(rows))), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for r, entries in enumerate(rows):
        x, y = pad, pad + r * line
        for c, text, w in entries:
            draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=tuple(int(v) for v in palette[c]))
            draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], outline=(0, 0, 0))
            draw.text((x + swatch + pad // 2, y + swatch / 2), text, fill=(0, 0, 0), font=font, anchor="lm")
            x += w + 2 * pad
    return strip


def color_with_legend(mask: np.ndarray, palette: np.ndarray, names: Sequence[str]) -> Image.Image:
    """The colour mask (the top H rows, exactly the mask's size) above a legend of the classes present in it,
    largest share first."""
    colour = colorize(mask, palette)
    counts = np.bincount(mask.ravel(), minlength=len(palette))
    present = sorted(np.flatnonzero(counts).tolist(), key=lambda c: (-counts[c], c))
    shares = [100.0 * counts[c] / mask.size for c in present]
    strip = legend_strip(colour.width, present, names, palette, shares)
    out = Image.new("RGB", (colour.width, colour.height + strip.height), (255, 255, 255))
    out.paste(colour, (0, 0))
    out.paste(strip, (0, colour.height))
    return out


def overlay(image: Image.Image, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """``image`` blended with the colour mask: (1 - alpha) × image + alpha × colour, the image's size."""
    colour = colorize(mask, palette)
    if colour.size != image.size:
        raise ValueError(f"mask {colour.size} and image {image.size} differ in size")
    return Image.blend(image.convert("RGB"), colour, alpha)
