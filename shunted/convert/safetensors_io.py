"""The safetensors format, read and written with numpy alone (no extra dependency).

Layout: 8-byte little-endian header length N, N bytes of JSON ``{name: {dtype, shape, data_offsets}, "__metadata__":
{str: str}}`` padded with spaces, then the tensors' bytes back to back. Nothing in it is executable.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError

DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
CODES = {v: k for k, v in DTYPES.items() if k != "BF16"}
MAX_HEADER = 100 * 1024 * 1024


def read_header(path: Path, fh) -> tuple[dict, int]:
    raw = fh.read(8)
    if len(raw) < 8:
        raise CheckpointFormatError(f"{path}: {'empty file' if not raw else 'truncated safetensors header'}")
    (size,) = struct.unpack("<Q", raw)
    if size > MAX_HEADER or size > os.fstat(fh.fileno()).st_size - 8:
        raise CheckpointFormatError(f"{path}: not a safetensors file (header length {size} is impossible)")
    try:
        header = json.loads(fh.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"{path}: not a safetensors file (bad JSON header: {exc})") from None
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{path}: not a safetensors file (header is not an object)")
    return header, 8 + size


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All tensors (bfloat16 widened to float32) and the metadata of a safetensors file."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        header, start = read_header(path, fh)
        total = os.fstat(fh.fileno()).st_size - start
        metadata = header.pop("__metadata__", None) or {}
        for name, info in sorted(header.items(), key=lambda kv: _offsets(path, kv)[0]):
            begin, end = _offsets(path, (name, info))
            code = info.get("dtype")
            if code not in DTYPES:
                raise CheckpointFormatError(f"{path}: tensor {name} has unsupported dtype {code!r}")
            dtype = np.dtype("<u2" if code == "BF16" else np.dtype(DTYPES[code]).newbyteorder("<"))
            shape = tuple(int(n) for n in info.get("shape", ()))
            if end > total or end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise CheckpointFormatError(
                    f"{path}: tensor {name} has inconsistent offsets (truncated file?)"
                )
            buf = bytearray(end - begin)
            fh.seek(start + begin)
            if fh.readinto(buf) != len(buf):
                raise CheckpointFormatError(f"{path}: truncated (tensor {name} is cut short)")
            array = np.frombuffer(buf, dtype=dtype).reshape(shape)
            if code == "BF16":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            elif not array.dtype.isnative:
                array = array.astype(array.dtype.newbyteorder("="))
            out[name] = array
    return out, metadata


def _offsets(path: Path, item) -> tuple[int, int]:
    name, info = item
    try:
        begin, end = (int(v) for v in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointFormatError(f"{path}: tensor {name} has no valid data_offsets") from None
    if not 0 <= begin <= end:
        raise CheckpointFormatError(f"{path}: tensor {name} has invalid data_offsets")
    return begin, end


def write(
    path: str | os.PathLike, state: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
):
    """Write ``state`` (C order, little-endian) with string ``metadata``."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    arrays = []
    offset = 0
    for name, value in state.items():
        array = np.ascontiguousarray(value)
        code = CODES.get(array.dtype.name)
        if code is None:
            raise CheckpointFormatError(f"{name}: dtype {array.dtype} cannot be stored in safetensors")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        header[name] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
        arrays.append(array)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for array in arrays:
            fh.write(array.reshape(-1).view(np.uint8).data)
