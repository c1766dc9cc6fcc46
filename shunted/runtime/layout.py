"""The export folder layout: the file names an export holds and its ``export.json``.

Written by ``shunted/engine/export.py``; read here by the runtimes (``paddle_inference.py``, ``onnxruntime.py``,
``openvino.py``). A Paddle export holds ``model.json`` + ``model.pdiparams`` (Paddle 3.3 PIR format), an ONNX
export ``model.onnx``; both hold ``export.json`` (:class:`ExportInfo`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ShuntedError
from ..fileio import read_input_text

FORMATS = ("paddle", "onnx")
PADDLE_PREFIX = "model"  # → model.json + model.pdiparams
ONNX_FILE = "model.onnx"
META_FILE = "export.json"
# What an export of an earlier version wrote when its export.json does not list its files.
EXPORT_FILES = (META_FILE, f"{PADDLE_PREFIX}.json", f"{PADDLE_PREFIX}.pdiparams", ONNX_FILE)


@dataclass
class ExportInfo:
    """What ``export.json`` records about an export directory."""

    model: str
    format: str
    img_size: int | list[int]
    features: bool
    num_classes: int
    outputs: list[str]
    weights: str | None = None
    parity: dict = field(default_factory=dict)  # {"images": n, "batch_sizes": [...], "max_rel_err": x}
    files: list[str] = field(default_factory=list)  # what the export wrote (export.json included)
    # Segmentation exports (N×K×H×W logits): "segmentation", the graph's input height and width are dynamic
    # (img_size is then the [H, W] the parity check ran at), and the runtimes pad an input's height and width
    # with zeros at the bottom/right to a multiple of pad_to and crop the logits back (as ShuntedFPN does).
    task: str = "classification"
    dynamic_hw: bool = False
    pad_to: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def paddle_files(export_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(model.json, model.pdiparams) of a Paddle export directory."""
    d = Path(export_dir)
    return d / f"{PADDLE_PREFIX}.json", d / f"{PADDLE_PREFIX}.pdiparams"


def existing_paddle_files(export_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(model.json, model.pdiparams) of a Paddle export, or ShuntedError naming the folder when it has none."""
    json_path, params_path = paddle_files(export_dir)
    if not json_path.is_file():
        raise ShuntedError(
            f"{export_dir}: no {json_path.name}; export it with `shunted export --format paddle`"
        )
    return json_path, params_path


def onnx_file(export_dir: str | os.PathLike) -> Path:
    """The ``model.onnx`` of an ONNX export directory (or the file itself)."""
    path = Path(export_dir) / ONNX_FILE if Path(export_dir).is_dir() else Path(export_dir)
    if not path.is_file():
        raise ShuntedError(f"{export_dir}: no {ONNX_FILE}; export it with `shunted export --format onnx`")
    return path


def read_info(export_dir: str | os.PathLike) -> ExportInfo | None:
    """The ``export.json`` of an export directory (or of the folder of a ``model.onnx`` given as a file), or None
    when there is none."""
    folder = Path(export_dir)
    path = (folder if folder.is_dir() else folder.parent) / META_FILE
    if not path.is_file():
        return None
    return ExportInfo(**json.loads(read_input_text(path, "record")))


def write_info(export_dir: str | os.PathLike, info: ExportInfo) -> Path:
    """Write ``info`` as the ``export.json`` of ``export_dir``."""
    path = Path(export_dir) / META_FILE
    path.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return path


def previous_export_files(folder: str | os.PathLike) -> set[str] | None:
    """The files a previous export in ``folder`` wrote (from its export.json), or None if it is not one."""
    folder = Path(folder)
    try:
        meta = json.loads(read_input_text(folder / META_FILE, "record"))
    except (OSError, ShuntedError, ValueError):
        return None
    if not (isinstance(meta, dict) and meta.get("format") in FORMATS and "model" in meta):
        return None
    files = meta.get("files") or EXPORT_FILES
    if not (
        isinstance(files, list | tuple)
        and all(isinstance(f, str) and "/" not in f and "\0" not in f for f in files)
    ):
        return None
    return {META_FILE, *files}
