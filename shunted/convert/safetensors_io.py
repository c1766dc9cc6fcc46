"""The safetensors format, read and written by the ``safetensors`` package (no home-made parser).

Layout: 8-byte little-endian header length N, N bytes of JSON ``{name: {dtype, shape, data_offsets}, "__metadata__":
{str: str}}``, then the tensors' bytes. Nothing in it is executable. The package checks the header (its length
against the file, the JSON, offsets that tile the data exactly without overlapping, shapes that match the byte
counts); on top of that :class:`SafetensorsFile` checks the header length itself first (one clear line), refuses
dtypes numpy cannot hold, and gives every tensor's dtype and shape before any tensor data is read, so the caller
can check them against the model first. bfloat16 (which numpy lacks) is read through the package's Paddle
binding and widened to float32 exactly.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError
from .safe_pickle import clip, short_repr

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
MAX_HEADER = 100 * 1024 * 1024  # the package's own limit
MAX_RANK = 32  # numpy's limit is 64; the model's tensors have at most 4 dimensions


@dataclass(frozen=True, eq=False)
class SafetensorRef:
    """One tensor of a safetensors file, known by its header only (no data read)."""

    name: str
    code: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> str:
        return DTYPES[self.code]

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _safe_open(path: Path, framework: str):
    """The package's reader. numpy: with the pread backend where the package has it, tensors are read rather
    than mapped (the file's pages do not stay in this process's memory). Paddle (bfloat16): the default backend,
    the only one its bfloat16 path supports."""
    from safetensors import safe_open

    if framework == "np":
        try:
            return safe_open(str(path), framework=framework, backend="pread")
        except TypeError:  # a package without backends
            pass
    return safe_open(str(path), framework=framework)


def _error(path: Path, exc: Exception) -> CheckpointFormatError:
    return CheckpointFormatError(f"{path}: not a readable safetensors file ({clip(exc, 200)})")


class SafetensorsFile:
    """An open safetensors file: ``tensors`` (name → :class:`SafetensorRef`) and ``metadata``; data on demand."""

    def __init__(self, path: str | os.PathLike):
        from safetensors import SafetensorError

        self.path = Path(path)
        self._paddle = None
        with open(self.path, "rb") as fh:
            raw = fh.read(8)
            size = os.fstat(fh.fileno()).st_size
        if len(raw) < 8:
            raise CheckpointFormatError(
                f"{self.path}: {'empty file' if not raw else 'truncated safetensors header'}"
            )
        (header,) = struct.unpack("<Q", raw)
        if header > min(MAX_HEADER, size - 8):
            raise CheckpointFormatError(
                f"{self.path}: not a safetensors file (header length {header} for a {size}-byte file)"
            )
        try:
            self._file = _safe_open(self.path, "np")
            self.metadata = dict(self._file.metadata() or {})
            self.tensors: dict[str, SafetensorRef] = {}
            for name in self._file.keys():
                view = self._file.get_slice(name)
                code = view.get_dtype()
                if code not in DTYPES:
                    raise CheckpointFormatError(
                        f"{self.path}: tensor {short_repr(name)} has unsupported dtype {short_repr(code)} "
                        f"(supported: {', '.join(DTYPES)})"
                    )
                shape = view.get_shape()
                if len(shape) > MAX_RANK:
                    raise CheckpointFormatError(
                        f"{self.path}: tensor {short_repr(name)} has {len(shape)} dimensions "
                        f"(at most {MAX_RANK} supported)"
                    )
                self.tensors[name] = SafetensorRef(name, code, tuple(int(n) for n in shape))
        except SafetensorError as exc:
            raise _error(self.path, exc) from None
        except (OSError, ValueError, TypeError) as exc:
            raise _error(self.path, exc) from None

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file = None
        self._paddle = None

    def array(self, ref: SafetensorRef) -> np.ndarray:
        """The tensor's values (native byte order; bfloat16 widened to float32)."""
        from safetensors import SafetensorError

        try:
            if ref.code == "BF16":
                if self._paddle is None:
                    self._paddle = _safe_open(self.path, "paddle")
                bits = np.asarray(self._paddle.get_tensor(ref.name).numpy()).view(np.uint16)
                array = (bits.astype(np.uint32) << 16).view(np.float32)
            else:
                array = self._file.get_tensor(ref.name)
        except SafetensorError as exc:
            raise _error(self.path, exc) from None
        if array.shape != ref.shape:
            raise CheckpointFormatError(
                f"{self.path}: tensor {short_repr(ref.name)} changed shape while read"
            )
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        return array


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All tensors (bfloat16 widened to float32) and the metadata of a safetensors file."""
    with SafetensorsFile(path) as st:
        return {name: st.array(ref) for name, ref in st.tensors.items()}, st.metadata


def write(
    path: str | os.PathLike, state: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
):
    """Write ``state`` (C order, little-endian) with string ``metadata`` through the package."""
    from safetensors.numpy import save_file

    arrays = {}
    for name, value in state.items():
        array = np.ascontiguousarray(value)
        if array.dtype.name not in CODES:
            raise CheckpointFormatError(f"{name}: dtype {array.dtype} cannot be stored in safetensors")
        arrays[name] = array.astype(array.dtype.newbyteorder("<"), copy=False)
    save_file(arrays, str(path), metadata=dict(metadata) if metadata else None)
