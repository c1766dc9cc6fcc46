"""Image datasets in the two layouts ImageNet val comes in — the API evaluation and training share.

    samples = list_samples(root)                       # (a) class folders: root/<class>/<...>/<file>
    samples = list_samples(root, labels="val_list.txt", num_classes=1000)   # (b) root + "relative/path label" lines
    dataset = ImageDataset(samples, transform)         # paddle.io.Dataset of (image, label, index)

(a) classes = sorted folder names, label = position of the sample's top-level folder, samples in sorted relative
path order. With ``num_classes=1000`` and folders that are all ImageNet-1k synset ids (``n01440764``, …), labels
are the standard indices (position in the sorted 1,000 synsets) even when only some classes are present; with
all 1,000 folders both rules agree. (b) samples in file order, labels as
written; a missing file, a malformed line (with its number) or a label outside [0, num_classes) is a DataError.
``transform`` maps an RGB ``PIL.Image`` to an array; ``ImageDataset`` decodes with ``Image.open(f).convert('RGB')``.
A file that cannot be decoded raises a DataError naming it, or with ``on_error="mark"`` yields a zero image with
label -1 so the caller (running in the main process, not a loader worker) decides whether to stop or skip it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .transforms import load_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
BAD_LABEL = -1


@dataclass
class Samples:
    """Image paths with their labels, in evaluation order, and the class names when known (layout a)."""

    root: Path
    paths: list[Path]
    labels: list[int]
    classes: list[str] = field(default_factory=list)
    layout: str = "folders"
    class_map: str = "sorted-folders"  # or "imagenet-synsets" / "label-file"

    def __len__(self) -> int:
        return len(self.paths)

    def relative(self, i: int) -> str:
        return self.paths[i].relative_to(self.root).as_posix()

    def head(self, n: int | None) -> Samples:
        """The first ``n`` samples (all when ``n`` is None)."""
        if n is None:
            return self
        return Samples(self.root, self.paths[:n], self.labels[:n], self.classes, self.layout, self.class_map)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_samples(
    root: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    num_classes: int | None = None,
) -> Samples:
    """Samples of a class-folder tree (``labels`` None) or of a folder plus a label list file."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (--data expects a folder of images)")
    if labels is not None:
        samples = _from_label_file(root, Path(labels))
    else:
        samples = _from_class_folders(root, imagenet=num_classes == 1000)
    if not samples.paths:
        raise DataError(f"{labels or root}: no images found")
    if (
        num_classes is not None
        and samples.class_map == "sorted-folders"
        and len(samples.classes) > num_classes
    ):
        raise DataError(
            f"{root}: {len(samples.classes)} class folders, but the model has {num_classes} classes"
        )
    if num_classes is not None:
        for path, label in zip(samples.paths, samples.labels, strict=True):
            if not 0 <= label < num_classes:
                where = f"{labels}: {path.relative_to(root).as_posix()}" if labels else str(path.parent)
                raise DataError(f"{where}: label {label} out of range for {num_classes} classes")
    return samples


def _from_class_folders(root: Path, imagenet: bool) -> Samples:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (pass --labels FILE for a flat folder of images)")
    index = {c: i for i, c in enumerate(classes)}
    class_map = "sorted-folders"
    if imagenet:
        from .classnames import imagenet_synsets

        synset_index = {s: i for i, s in enumerate(imagenet_synsets())}
        if all(c in synset_index for c in classes):
            index, class_map = {c: synset_index[c] for c in classes}, "imagenet-synsets"
    found = []
    for cls in classes:
        for dirpath, dirnames, filenames in os.walk(root / cls, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                path = Path(dirpath) / name
                if is_image_file(path):
                    found.append((path.relative_to(root).as_posix(), index[cls]))
    found.sort()
    paths, labels = [root / rel for rel, _ in found], [label for _, label in found]
    return Samples(root, paths, labels, classes, "folders", class_map)


def _from_label_file(root: Path, label_file: Path) -> Samples:
    try:
        text = label_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{label_file}: not a UTF-8 text file of 'relative/path label' lines") from None
    paths, labels = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not _is_int(parts[1]):
            raise DataError(f"{label_file}:{lineno}: expected 'relative/path label', got {line.strip()!r}")
        rel, label = parts[0].strip(), int(parts[1])
        path = root / rel
        if not path.is_file():
            raise DataError(f"{label_file}:{lineno}: {rel}: no such file under {root}")
        paths.append(path)
        labels.append(label)
    return Samples(root, paths, labels, [], "label-file", "label-file")


def _is_int(s: str) -> bool:
    return s.lstrip("-").isdigit()


try:  # a paddle.io.Dataset when paddle is present; the class works on its own too
    from paddle.io import Dataset as _Base
except ImportError:  # pragma: no cover
    _Base = object


class ImageDataset(_Base):
    """(transform(image), label, index) for each sample; see the module docstring for ``on_error``."""

    def __init__(
        self,
        samples: Samples,
        transform: Callable[..., np.ndarray],
        on_error: str = "raise",
    ) -> None:
        if on_error not in ("raise", "mark"):
            raise ValueError(f"on_error must be 'raise' or 'mark', not {on_error!r}")
        if on_error == "mark" and not hasattr(transform, "output_shape"):
            raise ValueError("on_error='mark' needs a transform with an output_shape")
        self.samples = samples
        self.transform = transform
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> np.ndarray:
        """The transformed image; a DataError naming the file if it cannot be decoded."""
        path = self.samples.paths[index]
        img = load_rgb(path)
        try:
            return self.transform(img)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot transform image ({exc})") from None

    def __getitem__(self, index: int) -> tuple[np.ndarray, int, int]:
        try:
            image = self.load(index)
        except DataError:
            if self.on_error == "raise":
                raise
            return np.zeros(self.transform.output_shape, np.float32), BAD_LABEL, index
        return image, self.samples.labels[index], index
