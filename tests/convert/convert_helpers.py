"""Builders for the converter tests: hand-made pickles (opcode by opcode) and torch-style containers.

Nothing here uses the package: the exploit files and containers are written independently of its reader/writer.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Ops:
    """A protocol-2 pickle written opcode by opcode."""

    def __init__(self):
        self.b = bytearray(pickle.PROTO + b"\x02")

    def raw(self, code: bytes) -> Ops:
        self.b += code
        return self

    def glob(self, module: str, name: str) -> Ops:
        self.b += pickle.GLOBAL + f"{module}\n{name}\n".encode()
        return self

    def s(self, text: str) -> Ops:
        data = text.encode()
        self.b += pickle.BINUNICODE + struct.pack("<I", len(data)) + data
        return self

    def i(self, value: int) -> Ops:
        self.b += pickle.BININT + struct.pack("<i", value)
        return self

    def tup(self, *ints: int) -> Ops:
        self.raw(pickle.MARK)
        for v in ints:
            self.i(v)
        return self.raw(pickle.TUPLE)

    def call(self, module: str, name: str, *str_args: str) -> Ops:
        """``module.name(*str_args)`` via GLOBAL + REDUCE."""
        self.glob(module, name).raw(pickle.MARK)
        for a in str_args:
            self.s(a)
        return self.raw(pickle.TUPLE + pickle.REDUCE)

    def ordered_dict(self) -> Ops:
        return self.glob("collections", "OrderedDict").raw(pickle.EMPTY_TUPLE + pickle.REDUCE)

    def tensor(self, key: str, numel: int, shape: tuple[int, ...], legacy: bool) -> Ops:
        """A float32 ``_rebuild_tensor_v2`` on storage ``key`` (persistent id as torch writes it)."""
        self.glob("torch._utils", "_rebuild_tensor_v2").raw(pickle.MARK)
        self.raw(pickle.MARK).s("storage").glob("torch", "FloatStorage").s(key).s("cpu").i(numel)
        if legacy:
            self.raw(pickle.NONE)
        self.raw(pickle.TUPLE + pickle.BINPERSID)
        self.i(0).tup(*shape).tup(*[int(np.prod(shape[k + 1 :])) for k in range(len(shape))])
        self.raw(pickle.NEWFALSE).ordered_dict()
        return self.raw(pickle.TUPLE + pickle.REDUCE)

    def stop(self) -> bytes:
        return bytes(self.b + pickle.STOP)


def zip_container(path: Path, data_pkl: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """A torch-style zip: ``archive/data.pkl``, byteorder, ``data/<key>`` entries, version."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", "3\n")
    return path


def legacy_container(
    path: Path, data_pkl: bytes, storages: dict[str, tuple[int, bytes]] | None = None
) -> Path:
    """The pre-1.6 stream: magic, protocol, sys_info, object pickle, key list, (int64 count + bytes) each."""
    storages = storages or {}
    out = bytearray()
    out += pickle.dumps(TORCH_MAGIC, protocol=2)
    out += pickle.dumps(1001, protocol=2)
    out += pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
        protocol=2,
    )
    out += data_pkl
    out += pickle.dumps(list(storages), protocol=2)
    for numel, data in storages.values():
        out += struct.pack("<q", numel) + data
    Path(path).write_bytes(bytes(out))
    return path


def container(path: Path, data_pkl_zip: bytes, data_pkl_legacy: bytes, legacy: bool, storages: dict) -> Path:
    """Write the zip or legacy form; ``storages`` maps key → float32 array."""
    if legacy:
        return legacy_container(
            path, data_pkl_legacy, {k: (a.size, a.tobytes()) for k, a in storages.items()}
        )
    return zip_container(path, data_pkl_zip, {k: a.tobytes() for k, a in storages.items()})
