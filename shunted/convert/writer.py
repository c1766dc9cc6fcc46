"""Writing converted checkpoints: ``convert_file`` (``.pdparams``, ``.safetensors`` or an official torch ``.pth``).

``convert_file`` reads its source with reader.py's ``read_weights`` (strict, no code run) and writes the result
atomically with a JSON sidecar (``sidecar_path``) recording source, output, variant, classes and preprocessing.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError, WeightsError
from ..fileio import atomic_path, check_outputs, sha256_file
from . import safetensors_io
from .mapping import paddle_to_torch
from .reader import PADDLE_SUFFIXES, SAFETENSORS_SUFFIXES, check_readable, describe_dtypes, read_weights
from .torch_writer import write_checkpoint

__all__ = ["convert_file", "sidecar_path", "write_pdparams"]

TORCH_OUT_SUFFIXES = (".pth", ".pt")


def _check_writable(dst: Path) -> None:
    """Refuse, before any work, a DST that is a folder or in a folder this process cannot write."""
    for target in (dst, sidecar_path(dst)):
        if target.is_dir():
            raise IsADirectoryError(
                errno.EISDIR, "is a directory; DST and DST.json must be files", str(target)
            )
    parent = next((p for p in (dst.parent, *dst.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is not a directory", str(parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CheckpointFormatError(f"{dst}: cannot write into {parent} (read-only or no permission)")


def _output_format(dst: Path) -> str:
    suffix = dst.suffix.lower()
    if suffix in PADDLE_SUFFIXES:
        return "pdparams"
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in TORCH_OUT_SUFFIXES:
        return "pth"
    raise CheckpointFormatError(f"{dst}: unsupported output extension; use .pdparams, .safetensors or .pth")


def write_pdparams(path: Path, state: Mapping[str, np.ndarray]) -> None:
    """A ``.pdparams`` (what ``paddle.load`` reads: a pickled dict of numpy arrays), without importing paddle.

    Protocol 5 writes each array's bytes straight from memory; ``paddle.save``'s protocol 4 would first copy
    every array into a bytes object and keep all of them alive until the end (twice the memory).
    """
    with open(path, "wb") as fh:
        pickle.dump({k: np.ascontiguousarray(v) for k, v in state.items()}, fh, protocol=5)


def convert_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model: str | None = None,
    num_classes: int | None = None,
    key: str | None = None,
    keep_dtype: bool = False,
) -> dict:
    """Convert ``src`` to ``dst`` (format by extension) and write ``dst.json``; returns the sidecar dict.

    model / num_classes: what the caller expects; a file holding something else is an error. ``dst`` is written
    atomically (an existing file is replaced only on success); ``src`` is only read.
    """
    from ..models.registry import get_pretrained_cfg, get_variant
    from ..version import __version__

    src, dst = Path(src), Path(dst)
    out_format = _output_format(dst)
    if model is not None:
        try:
            get_variant(model)
        except ValueError as exc:
            raise WeightsError(f"--model: {exc}") from None
    check_readable(src)
    _check_writable(dst)
    # DST or its sidecar being SRC (the same inode, a hard or symbolic link): writing would replace the source
    check_outputs([("DST", dst), ("DST's sidecar", sidecar_path(dst))], [("SRC", src)])
    weights = read_weights(src, key=key, keep_dtype=keep_dtype)
    if model is not None and model != weights.variant:
        raise WeightsError(f"--model {model} contradicts {src}: the file holds {weights.variant} weights")
    if num_classes is not None and num_classes != weights.num_classes:
        raise WeightsError(
            f"--num-classes {num_classes} contradicts {src}: its head has {weights.num_classes} classes"
        )
    out_dtypes = {v.dtype.name for v in weights.state.values() if v.dtype.kind == "f"}
    sidecar = {
        "source": {
            "name": src.name,
            "size": weights.size,
            "sha256": weights.sha256,
            "format": weights.format,
            "key": weights.key,
            "dtype": weights.dtype,
        },
        "output": {
            "name": dst.name,
            "format": out_format,
            "layout": "torch" if out_format == "pth" else "paddle",
        },
        "variant": weights.variant,
        "num_classes": weights.num_classes,
        "dtype": describe_dtypes(out_dtypes),
        "num_tensors": len(weights.state),
        "preprocessing": dataclasses.replace(
            get_pretrained_cfg(weights.variant), num_classes=weights.num_classes
        ).to_dict(),
        "package": {"name": "shunted-paddle", "version": __version__},
    }
    sidecar = json.loads(json.dumps(sidecar))  # plain JSON types (lists, not tuples), as in the file
    # DST and DST.json are both written to temporaries; the sidecar is renamed into place first, then DST, so
    # DST is never replaced without its sidecar. The sidecar records DST's size and sha256: should the last
    # rename fail, a reader can tell the sidecar describes a DST that is not there.
    with atomic_path(dst) as tmp:
        if out_format == "pdparams":
            write_pdparams(tmp, weights.state)
        elif out_format == "safetensors":
            metadata = {"format": "np", "layout": "paddle", "variant": weights.variant}
            metadata["num_classes"] = str(weights.num_classes)
            safetensors_io.write(tmp, weights.state, metadata)
        else:
            write_checkpoint(tmp, paddle_to_torch(weights.state), archive_name=dst.stem or "archive")
        sidecar["output"]["size"] = tmp.stat().st_size
        sidecar["output"]["sha256"] = sha256_file(tmp)
        with atomic_path(sidecar_path(dst)) as side:
            side.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return sidecar


def sidecar_path(dst: str | os.PathLike) -> Path:
    """``DST.json``, the sidecar ``convert_file`` writes beside ``DST``."""
    dst = Path(dst)
    return dst.with_name(dst.name + ".json")
