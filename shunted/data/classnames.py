"""Class names for predictions: the bundled ImageNet-1k list, a dataset's folder names, or a text file.

``shunted/assets/imagenet_synsets.txt`` holds the 1,000 ImageNet-1k synset ids sorted (line i = class i, the
standard numbering: class folders named by synset sort into it, and PaddleClas's ``val_list.txt`` uses it);
``imagenet_classes.txt`` holds their WordNet names in the same order (``tench, Tinca tinca``, …).
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import DataError


def _asset_lines(name: str) -> list[str]:
    text = resources.files("shunted").joinpath("assets", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in class-index order."""
    return tuple(_asset_lines("imagenet_classes.txt"))


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k synset ids in class-index order (sorted)."""
    return tuple(_asset_lines("imagenet_synsets.txt"))


def read_names_file(path: str | os.PathLike) -> list[str]:
    """One class name per line (blank lines ignored); a DataError if the file is unreadable or empty."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file of class names (one per line)") from None
    if not names:
        raise DataError(f"{path}: no class names (expected one per line)")
    return names


def resolve_class_names(spec: str | None, num_classes: int) -> list[str] | None:
    """Names for ``--labels``: ``imagenet``, a FILE, or None (ImageNet when the model has 1,000 classes).

    A list whose length differs from the model's class count is an error: names would be silently wrong.
    """
    if spec is None:
        return list(imagenet_class_names()) if num_classes == 1000 else None
    names = list(imagenet_class_names()) if spec == "imagenet" else read_names_file(spec)
    if len(names) != num_classes:
        raise DataError(f"--labels {spec}: {len(names)} class names, but the model has {num_classes} classes")
    return names
