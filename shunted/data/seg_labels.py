"""The label values of a segmentation split, read once before training starts (issue 20 #8, #9).

``scan_labels`` reads every label file once: its size and one bincount of its values. Entries are cached by file
size and mtime (``shunted seg-train`` keeps them in the run folder's ``label_counts.json``), so a resumed or
repeated run reads only the labels that changed. ``check_label_values`` stops on the first label holding a value
that is neither a class nor the ignore index — before any training, so no epoch is spent (or checkpointed) on a
split that would fail later, and values outside the random crops are seen too. ``check_crop_size`` refuses a
training crop taller and wider than any image can become after the random rescale (every crop would be a whole
image and padding, and memory would grow with the crop, not with the data).

Pure numpy/PIL: importing this module does not import Paddle.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import DataError
from .seg_datasets import read_label, reduce_zero_label
from .seg_transforms import rescaled_size


def scan_labels(
    paths: Iterable[str | os.PathLike], cache: Mapping[str, dict] | None = None
) -> dict[str, dict]:
    """path → ``{"size", "mtime_ns", "shape": [h, w], "values": {value: pixels}}`` for every label file;
    ``cache`` entries whose size and mtime match the file are reused, the others are read (``read_label``)."""
    cache = cache or {}
    out: dict[str, dict] = {}
    for path in paths:
        key = str(path)
        if key in out:
            continue
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DataError(f"{path}: cannot read label ({exc.strerror or type(exc).__name__})") from None
        hit = cache.get(key)
        if isinstance(hit, dict) and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            out[key] = hit
            continue
        label = read_label(path)
        counts = np.bincount(label.ravel(), minlength=256)
        out[key] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "shape": [int(label.shape[0]), int(label.shape[1])],
            "values": {str(v): int(c) for v, c in enumerate(counts) if c},
        }
    return out


def check_label_values(
    stats: Mapping[str, dict], num_classes: int, ignore_index: int, reduce: bool = False, what: str = ""
) -> None:
    """DataError naming the first label with a value (after ``reduce_zero_label`` when ``reduce``) that is
    outside 0..num_classes-1 and is not ``ignore_index``."""
    for path, entry in stats.items():
        values = np.array(sorted(int(v) for v in entry["values"]), dtype=np.uint8)
        if reduce:
            values = reduce_zero_label(values)
        wrong = values[(values >= num_classes) & (values != ignore_index)]
        if wrong.size:
            where = f" ({what})" if what else ""
            raise DataError(
                f"{path}: label value {int(wrong[0])} is outside 0..{num_classes - 1} and is not --ignore-index "
                f"{ignore_index}{where}; nothing was trained"
            )


def check_crop_size(
    crop: tuple[int, int],
    shapes: Iterable[tuple[int, int]],
    scale_high: float,
    base_size: tuple[int, int] | None = None,
) -> None:
    """DataError if the training crop (height, width) is both taller and wider than every image (``shapes``:
    (height, width)) can become after the largest random rescale ``scale_high`` (relative to ``base_size``):
    every crop would then be a whole image and padding, and memory would grow with the flag, not the data.
    Padding on one side only is mmseg's behaviour for images smaller than the crop, and is kept."""
    sizes = [rescaled_size(w, h, scale_high, base_size) for h, w in shapes]
    if not sizes:
        return
    max_w, max_h = max(s[0] for s in sizes), max(s[1] for s in sizes)
    if crop[0] > max_h and crop[1] > max_w:
        raise DataError(
            f"--crop-size {crop[0]}x{crop[1]} (DataLoader.Train.transform.crop_size, height x width): taller and "
            f"wider than any training image becomes ({max_h}x{max_w} at most, the largest rescaled by "
            f"scale_range's {scale_high:g}); every crop would be a whole image and padding — use at most "
            f"{max_h}x{max_w}"
        )


def read_cache(path: Path) -> dict:
    """The cached entries in ``path`` (a run's ``label_counts.json``); {} if absent or unreadable."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            loaded = json.loads(fh.read(64 << 20))
    except (OSError, ValueError):
        return {}
    return (
        loaded.get("labels", {})
        if isinstance(loaded, dict) and isinstance(loaded.get("labels"), dict)
        else {}
    )
