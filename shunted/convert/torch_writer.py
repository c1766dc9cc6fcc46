"""Write the official checkpoint layout ``{'model': state_dict}`` as a torch zip file — without torch.

The file is what ``torch.save`` writes: a zip (entries stored, data 64-byte aligned) holding ``data.pkl`` (a
protocol-2 pickle whose tensors are ``torch._utils._rebuild_tensor_v2`` calls on persistent-id storages),
``.format_version``, ``.storage_alignment``, ``byteorder``, ``data/<n>`` (raw little-endian bytes) and
``version``. The pickle is emitted opcode by opcode: only the globals ``torch.load(weights_only=True)`` allows
appear in it.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections.abc import Mapping

import numpy as np

ALIGNMENT = 64
STORAGE_TYPES = {
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "float64": "DoubleStorage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}


class _PickleWriter:
    """The handful of protocol-2 opcodes a state dict needs."""

    def __init__(self):
        self.out = bytearray(pickle.PROTO + b"\x02")

    def op(self, code: bytes) -> None:
        self.out += code

    def global_(self, module: str, name: str) -> None:
        self.out += pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")

    def str_(self, text: str) -> None:
        data = text.encode("utf-8")
        self.out += pickle.BINUNICODE + struct.pack("<I", len(data)) + data

    def int_(self, value: int) -> None:
        if 0 <= value < 256:
            self.out += pickle.BININT1 + struct.pack("<B", value)
        elif 0 <= value < 65536:
            self.out += pickle.BININT2 + struct.pack("<H", value)
        elif -(2**31) <= value < 2**31:
            self.out += pickle.BININT + struct.pack("<i", value)
        else:
            data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.out += pickle.LONG1 + struct.pack("<B", len(data)) + data

    def int_tuple(self, values: tuple[int, ...]) -> None:
        self.op(pickle.MARK)
        for v in values:
            self.int_(v)
        self.op(pickle.TUPLE)

    def empty_ordered_dict(self) -> None:
        self.global_("collections", "OrderedDict")
        self.op(pickle.EMPTY_TUPLE + pickle.REDUCE)

    def tensor(self, storage_key: str, storage_type: str, array: np.ndarray) -> None:
        # _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks)
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.op(pickle.MARK)
        self.op(pickle.MARK)
        self.str_("storage")
        self.global_("torch", storage_type)
        self.str_(storage_key)
        self.str_("cpu")
        self.int_(array.size)
        self.op(pickle.TUPLE + pickle.BINPERSID)
        self.int_(0)
        self.int_tuple(array.shape)
        self.int_tuple(_contiguous_strides(array.shape))
        self.op(pickle.NEWFALSE)
        self.empty_ordered_dict()
        self.op(pickle.TUPLE + pickle.REDUCE)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def checkpoint_pickle(state: Mapping[str, np.ndarray], wrap_key: str | None = "model") -> bytes:
    """data.pkl for ``{wrap_key: OrderedDict(state)}`` (or the bare state dict); storages are "0", "1", …"""
    w = _PickleWriter()
    if wrap_key is not None:
        w.op(pickle.EMPTY_DICT)
        w.str_(wrap_key)
    w.empty_ordered_dict()
    w.op(pickle.MARK)
    for i, (key, value) in enumerate(state.items()):
        storage_type = STORAGE_TYPES.get(np.asarray(value).dtype.name)
        if storage_type is None:
            raise ValueError(f"{key}: dtype {np.asarray(value).dtype} has no torch storage type")
        w.str_(key)
        w.tensor(str(i), storage_type, np.asarray(value))
    w.op(pickle.SETITEMS)
    if wrap_key is not None:
        w.op(pickle.SETITEM)
    w.op(pickle.STOP)
    return bytes(w.out)


def _aligned_info(zf: zipfile.ZipFile, name: str, size: int) -> zipfile.ZipInfo:
    """A stored ZipInfo whose data starts on a 64-byte boundary (padding in the local extra field, like torch)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    header_end = zf.fp.tell() + 30 + len(name.encode("utf-8"))
    pad = -(header_end + 4) % ALIGNMENT
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    return info


def write_checkpoint(
    path: str | os.PathLike,
    state: Mapping[str, np.ndarray],
    archive_name: str = "archive",
    wrap_key: str | None = "model",
) -> None:
    """Write ``state`` (official names and layouts) as a torch zip checkpoint at ``path``."""
    arrays = {k: np.asarray(v) for k, v in state.items()}
    entries: list[tuple[str, bytes | np.ndarray]] = [
        ("data.pkl", checkpoint_pickle(arrays, wrap_key)),
        (".format_version", b"1"),
        (".storage_alignment", str(ALIGNMENT).encode()),
        ("byteorder", b"little"),
    ]
    entries += [(f"data/{i}", a) for i, a in enumerate(arrays.values())]
    entries.append(("version", b"3\n"))
    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data in entries:
            if isinstance(data, np.ndarray):
                flat = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).reshape(-1)
                data = flat.view(np.uint8).data
            info = _aligned_info(zf, f"{archive_name}/{name}", len(data))
            with zf.open(info, "w") as out:
                out.write(data)
