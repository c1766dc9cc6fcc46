"""Segmentation samples: (image, class-index label) pairs in PaddleSeg's list layout or as folder pairs.

    samples = list_seg_samples(root, "train.txt")   # PaddleSeg list: "image label" per line, paths relative to root
    samples = list_seg_samples(root)                # folder pairs: root/images|img/... + root/labels|annotations|ann/...
    dataset = SegDataset(samples, SegTrainTransform(...), seed=0, train=True)   # (image, label, index)

List files (PaddleSeg's ``train_path``/``val_path`` format): one ``image`` or ``image label`` entry per line,
separated by whitespace (paths cannot contain spaces), relative to ``root`` (absolute paths are kept as they are);
blank lines and lines starting with ``#`` are skipped; ``list_file`` is taken as given, or under ``root`` when it
does not exist as given (``--data ROOT --list train.txt``). A line with three or more fields, a missing image or
a missing label file is a DataError naming ``list:line``. A line with the image only has no label (prediction
lists; training refuses it).

Folder pairs: images under ``root/images`` (or ``img``), labels under ``root/labels`` (or ``annotations``, ``ann``),
matched by relative path without the extension (``images/training/a.jpg`` ↔ ``annotations/training/a.png``, the
ADE20K layout); an image without a label (when a label folder exists) is a DataError naming it. Without a label
folder the samples have no labels.

Only paths are stored (bounded memory for any split size); images and labels are read when an item is loaded.
Labels are single-channel class-index PNGs (``read_label``): mode ``L``; ``P`` (palette, PaddleSeg's and
VOC's) keeps the indices, not the colours; 16-bit (``I;16``) and 32-bit (``I``) grey only with values < 256;
an RGB(A) label is a DataError naming the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from ..fileio import IMAGE_EXTENSIONS, read_input_text
from .transforms import IMAGE_ERRORS, check_pixels, load_rgb

IMAGE_DIRS = ("images", "img")
LABEL_DIRS = ("labels", "annotations", "ann")
SINGLE_CHANNEL_HINT = "labels must be single-channel class-index PNGs"


@dataclass
class SegSamples:
    """Image paths with their label paths (None where a sample has no label), in listing order."""

    root: Path
    images: list[Path]
    labels: list[Path | None]
    layout: str = "list"  # or "folders"
    list_file: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def source(self) -> str:
        """Where the samples were listed (for messages)."""
        return str(self.list_file if self.list_file is not None else self.root)

    def relative(self, i: int) -> str:
        """The image's path relative to ``root`` (as written), or the full path when it lies outside root."""
        path = self.images[i]
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def head(self, n: int | None) -> SegSamples:
        """The first ``n`` samples (all when ``n`` is None)."""
        if n is None:
            return self
        return dataclasses.replace(self, images=self.images[:n], labels=self.labels[:n])

    @property
    def labelled(self) -> int:
        return sum(label is not None for label in self.labels)

    def describe(self) -> dict:
        """For a result's JSON: where the samples come from and how many have labels."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "list": None if self.list_file is None else str(self.list_file),
            "images": len(self),
            "labelled": self.labelled,
        }


def list_seg_samples(root: str | os.PathLike, list_file: str | os.PathLike | None = None) -> SegSamples:
    """Samples of a PaddleSeg list file under ``root``, or of ``root``'s image/label folder pair."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (--data expects the dataset's root folder)")
    if list_file is not None:
        samples = _from_list(root, _find_list(root, Path(list_file)))
    else:
        samples = _from_folders(root)
    if not samples.images:
        raise DataError(f"{samples.source}: no images listed")
    return samples


def _find_list(root: Path, list_file: Path) -> Path:
    if list_file.exists():  # a pipe or device too: the opener refuses it by what it is
        return list_file
    if not list_file.is_absolute() and (root / list_file).exists():
        return root / list_file
    raise DataError(f"{list_file}: no such list file (looked as given and under {root})")


def _from_list(root: Path, list_file: Path) -> SegSamples:
    try:
        # a BOM (Windows editors) is not part of the path
        text = read_input_text(list_file, "list", encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{list_file}: not a UTF-8 text file of 'image label' lines") from None
    except OSError as exc:
        raise DataError(f"{list_file}: cannot read ({exc.strerror or exc})") from None
    images: list[Path] = []
    labels: list[Path | None] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{list_file}:{lineno}"
        if len(fields) > 2:
            raise DataError(
                f"{where}: expected 'image label' (two paths, no spaces), got {len(fields)} fields: {line.strip()!r}"
            )
        image = root / fields[0]
        if not image.is_file():
            raise DataError(f"{where}: image {fields[0]} not found under {root}")
        label = None
        if len(fields) == 2:
            label = root / fields[1]
            if not label.is_file():
                raise DataError(f"{where}: label {fields[1]} not found under {root}")
        images.append(image)
        labels.append(label)
    return SegSamples(root, images, labels, "list", list_file)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _files_by_key(top: Path) -> dict[str, Path]:
    """relative path without extension -> file, for the image files under ``top`` (hidden entries skipped).
    Linked folders are followed, each real folder once: a link loop (``images/up -> ..``) is not walked around."""
    found: dict[str, Path] = {}
    seen = {os.path.realpath(top)}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        kept = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = os.path.realpath(os.path.join(dirpath, d))
            if real not in seen:
                seen.add(real)
                kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not _is_image(path):
                continue
            key = path.relative_to(top).with_suffix("").as_posix()
            if key in found:
                raise DataError(f"{path}: two files named {key}.* ({found[key].name}, {name}); keep one")
            found[key] = path
    return found


def _from_folders(root: Path) -> SegSamples:
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        raise DataError(
            f"{root}: no {'/'.join(IMAGE_DIRS)} folder; give a list file (--list FILE of 'image label' lines) "
            f"or the folders {root}/images and {root}/labels"
        )
    label_dir = next((root / d for d in LABEL_DIRS if (root / d).is_dir()), None)
    image_files = _files_by_key(image_dir)
    label_files = _files_by_key(label_dir) if label_dir is not None else {}
    images: list[Path] = []
    labels: list[Path | None] = []
    for key in sorted(image_files):
        if label_dir is not None and key not in label_files:
            raise DataError(f"{image_files[key]}: no label {label_dir}/{key}.png")
        images.append(image_files[key])
        labels.append(label_files.get(key))
    return SegSamples(root, images, labels, "folders", None)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """uint8 H×W class indices of a single-channel label image; a DataError naming the file otherwise."""
    from .transforms import open_regular, pil_error_text

    fh = open_regular(path, "label")
    try:
        with fh, Image.open(fh) as img:
            check_pixels(img)
            img.load()
            mode, bands = img.mode, len(img.getbands())
            if mode in ("L", "P"):
                return np.array(img, dtype=np.uint8)  # P: the palette indices, not the colours
            if mode == "1":
                return np.array(img, dtype=np.uint8)
            if mode.startswith("I") and bands == 1:
                arr = np.array(img)
            else:
                raise DataError(f"{path}: label image is {mode} ({bands} channels); {SINGLE_CHANNEL_HINT}")
    except DataError:
        raise
    except IMAGE_ERRORS as exc:
        raise DataError(f"{path}: cannot read label ({pil_error_text(exc, fh, path)})") from None
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise DataError(
            f"{path}: label values {int(arr.min())}..{int(arr.max())} do not fit 0..255 ({mode}); {SINGLE_CHANNEL_HINT}"
        )
    return arr.astype(np.uint8)


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K's label convention, as mmseg's ``reduce_zero_label``: 0 ("other") becomes 255 (ignored with
    ``--ignore-index 255``), class k becomes k − 1, and 255 stays 255."""
    out = label.astype(np.uint8) - np.uint8(1)  # 0 wraps to 255
    out[out == 254] = 255
    return out


def _exif_turns(path: Path) -> bool:
    """Whether the image file's EXIF Orientation turns it by 90° or 270° for display."""
    try:
        with Image.open(path) as img:
            return img.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 — only a hint for a message
        return False


class SegDataset:
    """``[i] -> (image float32 3×H×W, label int64 H×W, i)``.

    ``train=True``: ``transform(image, label, rng)`` (a ``SegTrainTransform``) with ``rng`` a Generator seeded by
    (seed, epoch, i) — call ``set_epoch(e)`` before each epoch; every sample must have a label.
    ``train=False``: ``transform(image)`` (a ``SegEvalTransform``); the label is returned at its own (the image's
    original) size, all ``ignore_index`` when the sample has none. ``ignore_index`` defaults to the transform's,
    else 255. ``reduce_zero_label``: labels are read with ``reduce_zero_label`` (ADE20K).
    """

    def __init__(
        self,
        samples: SegSamples,
        transform: Callable,
        seed: int = 0,
        train: bool = False,
        ignore_index: int | None = None,
        reduce_zero_label: bool = False,
    ) -> None:
        self.samples = samples
        self.reduce_zero_label = bool(reduce_zero_label)
        self.transform = transform
        self.seed = int(seed)
        self.train = bool(train)
        self.epoch = 0
        if ignore_index is None:
            ignore_index = getattr(transform, "ignore_index", 255)
        self.ignore_index = int(ignore_index)
        if self.train:
            missing = [i for i, label in enumerate(samples.labels) if label is None]
            if missing:
                raise DataError(
                    f"{samples.source}: {samples.relative(missing[0])} has no label "
                    f"({len(missing)} of {len(samples)} samples unlabelled); training needs 'image label' pairs"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def load(self, index: int) -> tuple[Image.Image, np.ndarray | None]:
        """The decoded RGB image and its uint8 label (None when unlabelled); sizes checked."""
        image = load_rgb(self.samples.images[index])
        label_path = self.samples.labels[index]
        if label_path is None:
            return image, None
        label = read_label(label_path)
        if self.reduce_zero_label:
            label = reduce_zero_label(label)
        if label.shape != (image.height, image.width):
            turned = label.shape == (image.width, image.height) and _exif_turns(self.samples.images[index])
            raise DataError(
                f"{label_path}: label is {label.shape[1]}×{label.shape[0]}, its image "
                f"{self.samples.images[index].name} is {image.width}×{image.height}"
                + (" as stored (its EXIF orientation, which viewers apply, is ignored)" if turned else "")
            )
        return image, label

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        index = int(index)
        image, label = self.load(index)
        path = self.samples.images[index]
        try:
            if self.train:
                x, y = self.transform(image, label, self.rng(index))
                return x, y, index
            x = self.transform(image)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot transform image ({exc})") from None
        if label is None:
            y = np.full((image.height, image.width), self.ignore_index, np.int64)
        else:
            y = label.astype(np.int64)
        return x, y, index
