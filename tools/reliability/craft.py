"""Crafting hostile files byte by byte: a tiny pickle assembler (the hostile files need opcodes no pickler would
write), torch zip / legacy checkpoints and safetensors."""

from __future__ import annotations

import dataclasses
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1 << 20

# ---------------------------------------------------------------------------------------------------------------
# Crafting files: a tiny pickle assembler (the hostile files need opcodes no pickler would write)


@dataclasses.dataclass(frozen=True)
class G:
    """A global ``module.name`` (GLOBAL opcode)."""

    module: str
    name: str


@dataclasses.dataclass(frozen=True)
class Call:
    """``func(*args)`` (REDUCE)."""

    func: Any
    args: tuple


@dataclasses.dataclass(frozen=True)
class PID:
    """A persistent id (BINPERSID), as torch writes storages."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Memo:
    """Emit ``value`` and remember it under ``slot`` (LONG_BINPUT)."""

    slot: int
    value: Any


@dataclasses.dataclass(frozen=True)
class Get:
    """The value remembered under ``slot`` (LONG_BINGET): a reference, not a copy."""

    slot: int


@dataclasses.dataclass(frozen=True)
class Raw:
    """Opcodes emitted as they are."""

    data: bytes


def _emit(out: bytearray, obj: Any) -> None:
    if isinstance(obj, Raw):
        out += obj.data
    elif isinstance(obj, G):
        out += b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
    elif isinstance(obj, Call):
        _emit(out, obj.func)
        _emit(out, tuple(obj.args))
        out += b"R"
    elif isinstance(obj, PID):
        _emit(out, obj.value)
        out += b"Q"
    elif isinstance(obj, Memo):
        _emit(out, obj.value)
        out += b"r" + struct.pack("<I", obj.slot)
    elif isinstance(obj, Get):
        out += b"j" + struct.pack("<I", obj.slot)
    elif obj is None:
        out += b"N"
    elif obj is True or obj is False:
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        if -(2**31) <= obj < 2**31:
            out += b"J" + struct.pack("<i", obj)
        else:
            raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            out += b"\x8a" + bytes([len(raw)]) + raw
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out += b"X" + struct.pack("<I", len(raw)) + raw
    elif isinstance(obj, bytes | bytearray):
        out += b"B" + struct.pack("<I", len(obj)) + bytes(obj)
    elif isinstance(obj, tuple):
        out += b"("
        for item in obj:
            _emit(out, item)
        out += b"t"
    elif isinstance(obj, list):
        out += b"]"
        for item in obj:
            _emit(out, item)
            out += b"a"
    elif isinstance(obj, dict):
        out += b"}"
        for key, value in obj.items():
            _emit(out, key)
            _emit(out, value)
            out += b"s"
    else:
        raise TypeError(f"cannot emit {type(obj).__name__}")


def pickle_bytes(obj: Any, proto: int = 2) -> bytes:
    out = bytearray(b"\x80" + bytes([proto]))
    _emit(out, obj)
    return bytes(out + b".")


STORAGE_TYPES = {"float32": "FloatStorage", "float16": "HalfStorage", "int64": "LongStorage"}


def storage_pid(key: str, numel: int, dtype: str = "float32", legacy: bool = False) -> PID:
    base = ("storage", G("torch", STORAGE_TYPES[dtype]), key, "cpu", numel)
    return PID(base + (None,) if legacy else base)


def tensor(pid: Any, size, stride=None, offset: int = 0) -> Call:
    size = tuple(size)
    if stride is None:
        stride, acc = [], 1
        for n in reversed(size):
            stride.insert(0, acc)
            acc *= n
    ordered = Call(G("collections", "OrderedDict"), ())
    return Call(G("torch._utils", "_rebuild_tensor_v2"), (pid, offset, size, tuple(stride), False, ordered))


def write_zip_pth(
    path: Path,
    root: Any,
    storages: dict[str, bytes],
    deflate: dict[str, int] | None = None,
    proto: int = 2,
) -> None:
    """A torch >= 1.6 zip checkpoint; ``deflate`` maps storage keys to a count of zero bytes written deflated."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle_bytes(root, proto))
        zf.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)
        for key, nbytes in (deflate or {}).items():
            info = zipfile.ZipInfo(f"archive/data/{key}")
            info.compress_type = zipfile.ZIP_DEFLATED
            chunk = bytes(MB)
            with zf.open(info, "w", force_zip64=True) as fh:
                for _ in range(nbytes // MB):
                    fh.write(chunk)
        zf.writestr("archive/version", "3\n")


def patch_zip_sizes(path: Path, entry: str, size: int) -> None:
    """Make the central directory claim ``size`` bytes (stored and uncompressed) for ``entry``."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + name_len]) == entry.encode():
            struct.pack_into("<II", data, pos + 20, size, size)
            path.write_bytes(bytes(data))
            return
        pos = data.find(b"PK\x01\x02", pos + 4)
    raise KeyError(entry)


def write_legacy_pth(path: Path, root: Any, storages: list[tuple[str, int, bytes]]) -> None:
    """A ``_use_new_zipfile_serialization=False`` checkpoint: (key, declared numel, bytes) per storage."""
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    with open(path, "wb") as fh:
        fh.write(pickle_bytes(0x1950A86A20F9469CFC6C))
        fh.write(pickle_bytes(1001))
        fh.write(pickle_bytes(sys_info))
        fh.write(pickle_bytes(root))
        fh.write(pickle_bytes([key for key, _, _ in storages]))
        for _, numel, data in storages:
            fh.write(struct.pack("<q", numel))
            fh.write(data)


def write_safetensors(path: Path, header: Any, data: bytes = b"", raw_header: bytes | None = None) -> None:
    blob = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        fh.write(data)


def deep_list_pickle(depth: int, wrap: Callable[[bytes], bytes] | None = None) -> bytes:
    """``[[[...]]]`` ``depth`` levels deep: the unpickler builds it without recursion; repr/json/copy recurse."""
    body = b"]" * depth + b"a" * (depth - 1)
    return b"\x80\x02" + (wrap(body) if wrap else body) + b"."


def deep_dict_pickle(depth: int) -> bytes:
    """``{'model': {'a': {'a': ...}}}``."""
    body = b"}" + (b"X\x01\x00\x00\x00a}" * depth) + b"s" * depth
    return b"\x80\x02}X\x05\x00\x00\x00model" + body + b"s."
