"""Image datasets in the two layouts ImageNet val comes in — the API evaluation and training share.

    samples = list_samples(root)                       # (a) class folders: root/<class>/<...>/<file>
    samples = list_samples(root, labels="val_list.txt", num_classes=1000)   # (b) root + "relative/path label" lines
    samples = list_samples(root, num_classes=10, class_names=names)         # (a), folders mapped by name
    dataset = ImageDataset(samples, transform)         # (image, label, index) items, for any loader

(a) samples in sorted relative path order; a sample's label is that of its top-level (class) folder:
  - ``class_names`` given (the model's names in class-index order, see ``classnames.known_class_names``): the
    index of the folder's name; a folder that is not one of them is a DataError naming it;
  - else, with ``num_classes=1000`` and folders that are ImageNet-1k synset ids (``n01440764``, …): the
    standard index (position in the sorted 1,000 synsets), even when only some classes are present; a mix of
    synset and other folders is a DataError naming the first other one;
  - else the position of the folder in the sorted folder names — only when no model is given or the folder
    count equals ``num_classes`` (recorded as "sorted folder order"); another count is a DataError saying how
    to give the mapping, never a positional guess.
  Symbolic links are followed once: a folder already walked or enclosing the class folder (``loop -> .``) is
  skipped (logged and listed in ``Samples.links_skipped``), a file reached twice in one class counts once,
  and a file reached from two classes is a DataError.
(b) samples in file order, labels as written; a missing file, a malformed line (with its number) or a label
outside [0, num_classes) is a DataError.
``transform`` maps an RGB ``PIL.Image`` to an array; ``ImageDataset`` decodes with ``Image.open(f).convert('RGB')``.
A file that cannot be decoded raises a DataError naming it, or with ``on_error="mark"`` yields a zero image with
label -1 so the caller (running in the main process, not a loader worker) decides whether to stop or skip it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import IMAGE_EXTENSIONS, read_input_text
from .inputs import is_image_file  # noqa: F401 (part of this module's API)
from .transforms import load_rgb

log = logging.getLogger(__name__)

BAD_LABEL = -1
MAPPING_HINT = (
    "pass --class-names FILE (the model's class names, one per line in class-index order) "
    "or --labels FILE ('relative/path label' lines)"
)


@dataclass
class Samples:
    """Image paths with their labels, in evaluation order, and how folders map to labels (layout a)."""

    root: Path
    paths: list[Path]
    labels: list[int]
    classes: list[str] = field(default_factory=list)  # the class folders present, sorted
    layout: str = "folders"
    class_map: str = "sorted-folders"  # or "class-names" / "imagenet-synsets" / "label-file"
    names_source: str | None = None  # where the class names came from (class_map "class-names")
    class_index: dict[str, int] = field(default_factory=dict)  # class folder -> label
    links_skipped: list[str] = field(default_factory=list)  # symlinked folders not followed (loops, repeats)

    def __len__(self) -> int:
        return len(self.paths)

    def relative(self, i: int) -> str:
        return self.paths[i].relative_to(self.root).as_posix()

    def head(self, n: int | None) -> Samples:
        """The first ``n`` samples (all when ``n`` is None)."""
        if n is None:
            return self
        return dataclasses.replace(self, paths=self.paths[:n], labels=self.labels[:n])

    @property
    def class_mapping(self) -> str:
        """How labels were given, in words (recorded in evaluation results)."""
        if self.class_map == "class-names":
            return f"by folder name (class names from {self.names_source})"
        if self.class_map == "imagenet-synsets":
            return "by folder name (ImageNet-1k synset ids, shunted/assets/imagenet_synsets.txt)"
        if self.class_map == "label-file":
            return "labels as written in the label file"
        return "sorted folder order (class names unknown)"

    def describe(self) -> dict:
        """The mapping, for a result's JSON: how, from where, folder -> label, links not followed."""
        return {
            "class_mapping": self.class_mapping,
            "class_names_source": self.names_source,
            "class_index": dict(self.class_index),
            "links_skipped": list(self.links_skipped),
        }


def list_samples(
    root: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    names_source: str | None = None,
    hint: str = MAPPING_HINT,
) -> Samples:
    """Samples of a class-folder tree (``labels`` None) or of a folder plus a label list file.

    ``class_names``: the model's class names in index order (``names_source`` says where they came from, for
    messages and the record); ``hint``: how the user gives the mapping, appended to the count-mismatch error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (--data expects a folder of images)")
    if labels is not None:
        samples = _from_label_file(root, Path(labels))
    else:
        samples = _from_class_folders(root, num_classes, class_names, names_source, hint)
    if not samples.paths:
        raise DataError(f"{labels or root}: no images found")
    if num_classes is not None:
        for path, label in zip(samples.paths, samples.labels, strict=True):
            if not 0 <= label < num_classes:
                where = f"{labels}: {path.relative_to(root).as_posix()}" if labels else str(path.parent)
                raise DataError(f"{where}: label {label} out of range for {num_classes} classes")
    return samples


def _class_index(
    root: Path,
    classes: list[str],
    num_classes: int | None,
    class_names: Sequence[str] | None,
    names_source: str | None,
    hint: str,
) -> tuple[dict[str, int], str]:
    """(folder -> label, class_map) by the rules of the module docstring."""
    if class_names is not None:
        names = list(class_names)
        if num_classes is not None and len(names) > num_classes:
            raise DataError(
                f"{names_source}: {len(names)} class names, but the model has {num_classes} classes"
            )
        index = {}
        for i, name in enumerate(names):
            if name in index:
                raise DataError(f"{names_source}: class name {name!r} is listed twice")
            index[name] = i
        for c in classes:
            if c not in index:
                shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
                raise DataError(
                    f"{root / c}: folder {c!r} is not one of the model's classes "
                    f"({len(names)} names from {names_source}: {shown})"
                )
        return {c: index[c] for c in classes}, "class-names"
    if num_classes == 1000:
        from .classnames import imagenet_synsets

        synset_index = {s: i for i, s in enumerate(imagenet_synsets())}
        others = [c for c in classes if c not in synset_index]
        if len(others) < len(classes):
            if others:
                raise DataError(
                    f"{root / others[0]}: folder {others[0]!r} is not an ImageNet-1k synset id, unlike "
                    f"{len(classes) - len(others)} other folder(s); {hint}"
                )
            return {c: synset_index[c] for c in classes}, "imagenet-synsets"
    if num_classes is not None and len(classes) != num_classes:
        raise DataError(
            f"{root}: {len(classes)} class folders, but the model has {num_classes} classes and its class "
            f"names are unknown, so folders cannot be matched to classes; {hint}"
        )
    return {c: i for i, c in enumerate(classes)}, "sorted-folders"


def _from_class_folders(
    root: Path,
    num_classes: int | None,
    class_names: Sequence[str] | None,
    names_source: str | None,
    hint: str,
) -> Samples:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (pass --labels FILE for a flat folder of images)")
    index, class_map = _class_index(root, classes, num_classes, class_names, names_source, hint)
    found: list[tuple[str, str, str]] = []  # (relative path, class, real path)
    skipped: list[str] = []
    for cls in classes:
        found.extend((rel, cls, real) for rel, real in _walk_class(root, cls, skipped))
    found.sort()
    owner: dict[str, tuple[str, str]] = {}  # real path -> (class, relative path) of its first occurrence
    paths, labels = [], []
    for rel, cls, real in found:
        if real in owner:
            first_cls, first_rel = owner[real]
            if first_cls != cls:
                raise DataError(
                    f"{root / rel}: the same file as {root / first_rel}, in two classes ({first_cls}, {cls})"
                )
            continue  # the same file reached twice in one class (two links) counts once
        owner[real] = (cls, rel)
        paths.append(root / rel)
        labels.append(index[cls])
    return Samples(root, paths, labels, classes, "folders", class_map, names_source, index, skipped)


def _walk_class(root: Path, cls: str, skipped: list[str]):
    """(relative path, real path) of the image files under ``root/cls``, following each folder once."""
    top = os.path.join(root, cls)
    top_real = os.path.realpath(top)
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        encloses = top_real == real or top_real.startswith(real.rstrip(os.sep) + os.sep)
        if real in seen or (encloses and dirpath != top):
            log.warning("%s: links to a folder already listed (%s), not followed again", dirpath, real)
            skipped.append(rel_dir)
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            path = os.path.join(dirpath, name)
            target = os.path.realpath(path) if os.path.islink(path) else os.path.join(real, name)
            yield f"{rel_dir}/{name}", target


def _from_label_file(root: Path, label_file: Path) -> Samples:
    try:
        text = read_input_text(label_file, "list")
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


class ImageDataset:
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


def marked_sample(dataset: ImageDataset):
    """What a loader yields for a sample it could not produce (``loader_guard.MarkFailures``): a zero image of
    the transform's output shape and BAD_LABEL, with the sample's index."""
    shape = dataset.transform.output_shape
    return lambda index: (np.zeros(shape, np.float32), BAD_LABEL, index)
