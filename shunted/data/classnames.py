"""Class names: the bundled ImageNet-1k list, a text file, or what is recorded beside a checkpoint.

``shunted/assets/imagenet_synsets.txt`` holds the 1,000 ImageNet-1k synset ids sorted (line i = class i, the
standard numbering: class folders named by synset sort into it, and PaddleClas's ``val_list.txt`` uses it);
``imagenet_classes.txt`` holds their WordNet names in the same order (``tench, Tinca tinca``, …).

``known_class_names(weights, num_classes, ...)`` finds the names a checkpoint was trained with, so evaluation
maps class folders by name (``datasets.list_samples``): a ``--class-names`` file; the ``classes`` of the
checkpoint's ``DST.json`` sidecar; the checkpoint being (or, by its sidecar's ``source.sha256``, converted
from) a bundled checkpoint whose classes the package records (``assets/demo/expected.json``: the CIFAR-10
demo); the ``classes`` of a training run's ``summary.json`` beside its ``last/best/ema.pdparams``
(``engine/train/loop.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import DataError
from ..fileio import InputError, read_input_text


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
        names = [line.strip() for line in read_input_text(path, "names").splitlines() if line.strip()]
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


RUN_WEIGHTS = (
    "last.pdparams",
    "best.pdparams",
    "ema.pdparams",
)  # what engine/train/loop.py writes beside summary.json
_MAX_JSON = 4 << 20  # a sidecar or summary larger than this is not ours: not read


@dataclass(frozen=True)
class KnownNames:
    """A model's class names in class-index order and where they were found (for messages and the record)."""

    names: tuple[str, ...]
    source: str


@lru_cache(maxsize=1)
def bundled_checkpoints() -> dict[str, tuple[str, ...]]:
    """sha256 -> class names of the checkpoints shipped with the package (the CIFAR-10 demo)."""
    text = resources.files("shunted").joinpath("assets", "demo", "expected.json").read_text(encoding="utf-8")
    record = json.loads(text)
    return {record["checkpoint_sha256"]: tuple(record["classes"])}


def class_names_file(path: str | os.PathLike, num_classes: int, flag: str = "--class-names") -> KnownNames:
    """One name per line in class-index order; as many as the model has classes, none twice."""
    names = read_names_file(path)
    if len(names) != num_classes:
        raise DataError(f"{flag} {path}: {len(names)} class names, but the model has {num_classes} classes")
    _check_unique(names, f"{flag} {path}")
    return KnownNames(tuple(names), f"{flag} {path}")


def known_class_names(
    weights: str | os.PathLike,
    num_classes: int,
    names_file: str | os.PathLike | None = None,
    sha256: str | None = None,
) -> KnownNames | None:
    """The class names of ``weights`` (a model of ``num_classes`` classes), or None when nothing records them.

    Looked for in the order of the module docstring; ``sha256`` is the weights file's, when already computed.
    A record that names another class count is an error (it does not describe these weights).
    """
    if names_file is not None:
        return class_names_file(names_file, num_classes)
    weights = Path(weights)
    bundled = bundled_checkpoints()
    sidecar = weights.with_name(weights.name + ".json")
    record = _small_json(sidecar)
    if record is not None:
        if isinstance(record.get("classes"), list):
            return _checked(record["classes"], num_classes, str(sidecar), exact=True)
        source = record.get("source")
        source_sha = source.get("sha256") if isinstance(source, dict) else None
        if source_sha in bundled:
            return _checked(
                bundled[source_sha], num_classes, f"{sidecar} (converted from the bundled demo checkpoint)"
            )
    if sha256 is None and weights.is_file() and bundled:
        from ..fileio import sha256_file

        sha256 = sha256_file(weights)
    if sha256 in bundled:
        return _checked(bundled[sha256], num_classes, f"the bundled demo checkpoint (sha256 {sha256[:12]}…)")
    if weights.name in RUN_WEIGHTS:
        summary = weights.parent / "summary.json"
        record = _small_json(summary)
        if record is not None and record.get("classes"):
            return _checked(record["classes"], num_classes, str(summary), exact=False)
    return None


def _checked(names, num_classes: int, source: str, exact: bool = True) -> KnownNames:
    """Names for indices 0..len-1 (``exact``: all ``num_classes`` of them); a DataError naming ``source``."""
    if not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{source}: 'classes' must be a list of non-empty names")
    if len(names) > num_classes or (exact and len(names) != num_classes):
        raise DataError(f"{source}: {len(names)} class names, but the weights have {num_classes} classes")
    _check_unique(names, source)
    return KnownNames(tuple(names), source)


def _check_unique(names, source: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise DataError(f"{source}: class name {name!r} is listed twice")
        seen.add(name)


def _small_json(path: Path) -> dict | None:
    """A JSON object from a small regular file, or None (absent, too large, not JSON: not our record)."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_JSON:
            return None
        value = json.loads(read_input_text(path, "record"))
    except (OSError, InputError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
