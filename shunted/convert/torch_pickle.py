"""Read PyTorch ``.pth`` files without torch and without running anything named in them.

Every pickle in the file goes through the allow-list unpickler of :mod:`shunted.convert.safe_pickle`. Two
containers are understood:

* zip (torch >= 1.6): ``<folder>/data.pkl`` (the object graph; storages are persistent ids), ``<folder>/byteorder``
  and one entry ``<folder>/data/<key>`` per storage;
* legacy pickle stream (``_use_new_zipfile_serialization=False``): magic number, protocol version and sys-info
  pickles, the object pickle, the list of storage keys, then each storage as an int64 element count + raw bytes.

Tensors come out as :class:`TensorRef` (storage, offset, size, stride) with their shapes and dtypes, so a caller
can check them before any tensor data is read; :meth:`PthFile.array` reads one when asked (the optimizer state
of a training checkpoint is never loaded). Memory stays bounded by the file: every storage is checked to lie
inside the file when the pickle names it (a declared size is never allocated), storages are views of a
read-only memory map of the file (a region several tensors share is never copied per tensor or per storage),
zip storages must be stored uncompressed (as ``torch.save`` writes them), tensors with the same view share one
array and all arrays made together are at most twice the file (bfloat16 storages, which numpy cannot hold, are
widened to float32 exactly: bits << 16).
"""

from __future__ import annotations

import collections
import contextlib
import io
import mmap
import os
import pickle
import struct
import weakref
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import CheckpointFormatError
from .safe_pickle import (  # noqa: F401 - re-exported: the objects a .pth unpickles to
    ALLOWED_GLOBALS,
    Namespace,
    NumpyArray,
    PickledObject,
    StorageRef,
    TensorRef,
    _int,
    _Marker,
    _numel,
    clip,
    safe_loads,
    short_repr,
)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _storage_marker(value, what: str) -> _Marker:
    if not isinstance(value, _Marker) or value.dtype is None:
        raise pickle.UnpicklingError(f"{what}: expected a torch storage type, got {short_repr(value)}")
    return value


def _numpy_dtype_of(name: str, byteorder: str) -> np.dtype:
    dtype = np.dtype("uint16" if name == "bfloat16" else name)
    return dtype.newbyteorder("<" if byteorder == "little" else ">") if dtype.itemsize > 1 else dtype


# ---------------------------------------------------------------------------------------------------------------
# The two containers


class PthFile:
    """An open ``.pth``: ``root`` is the unpickled object graph (tensors as :class:`TensorRef`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.root: Any = None
        self.format = ""
        self.byteorder = "little"
        self._fh: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self.size = os.fstat(self._fh.fileno()).st_size
        self._zip: zipfile.ZipFile | None = None
        self._zip_prefix = ""
        self._map: mmap.mmap | None = None
        self._spans: dict[str, tuple[int, int]] = {}  # storage key → (byte offset in the file, elements)
        self._zip_storages: dict[str, StorageRef] = {}
        # TensorRef.view_key → array, while the caller keeps it: equal views share it instead of copying again
        self._arrays: weakref.WeakValueDictionary[tuple, np.ndarray] = weakref.WeakValueDictionary()
        self._made = 0  # bytes of arrays made so far
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PthFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._arrays.clear()
        if self._zip is not None:
            self._zip.close()
        if self._map is not None:
            with contextlib.suppress(BufferError):  # arrays still viewing it keep it alive until collected
                self._map.close()
        self._fh.close()

    # -- opening -----------------------------------------------------------------------------------------------

    def _open(self) -> None:
        head = self._fh.read(4)
        self._fh.seek(0)
        if not head:
            raise CheckpointFormatError(f"{self.path}: empty file")
        if head[:2] == b"PK":
            self._open_zip()
        elif head[:1] == b"\x80":
            self._open_legacy()
        elif head[:3] == b"\x1f\x8b\x08" or head[:4] == b"ustar":
            raise CheckpointFormatError(f"{self.path}: a compressed/tar archive, not a PyTorch checkpoint")
        else:
            raise CheckpointFormatError(f"{self.path}: not a PyTorch checkpoint (neither zip nor pickle)")

    def _open_zip(self) -> None:
        self.format = "zip"
        try:
            self._zip = zipfile.ZipFile(self._fh)
            names = self._zip.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as exc:
            raise CheckpointFormatError(
                f"{self.path}: truncated or corrupt zip archive ({clip(exc)})"
            ) from None
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
        if not pkls:
            if any(n.endswith("constants.pkl") for n in names):
                raise CheckpointFormatError(
                    f"{self.path}: a TorchScript archive, not a checkpoint; save model.state_dict() instead"
                )
            raise CheckpointFormatError(
                f"{self.path}: zip archive without data.pkl, not a PyTorch checkpoint"
            )
        self._zip_prefix = pkls[0][: -len("data.pkl")]
        byteorder = self._zip_prefix + "byteorder"
        if byteorder in names:
            self.byteorder = self._read_entry(byteorder).decode("ascii", "replace").strip()
            if self.byteorder not in ("little", "big"):
                raise CheckpointFormatError(f"{self.path}: unknown byteorder {short_repr(self.byteorder)}")
        self.root = safe_loads(self._read_entry(pkls[0]), self.path, self._zip_persistent_load)

    def _entry(self, name: str) -> zipfile.ZipInfo:
        try:
            return self._zip.getinfo(name)
        except KeyError:
            raise CheckpointFormatError(f"{self.path}: zip entry {short_repr(name)} is missing") from None

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where ``info``'s data starts in the file; checks that its compressed bytes lie inside the file."""
        self._fh.seek(info.header_offset)
        local = self._fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise CheckpointFormatError(f"{self.path}: corrupt zip entry {short_repr(info.filename)}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.compress_size > self.size:
            raise CheckpointFormatError(
                f"{self.path}: zip entry {short_repr(info.filename)} claims {info.compress_size} bytes at "
                f"offset {start}, past the end of the {self.size}-byte file"
            )
        return start

    def _read_entry(self, name: str) -> bytes:
        info = self._entry(name)
        self._data_offset(info)
        if info.file_size > self.size:  # a deflate bomb would expand past anything the file can justify
            raise CheckpointFormatError(
                f"{self.path}: zip entry {short_repr(name)} expands to {info.file_size} bytes, more than the "
                f"{self.size}-byte file"
            )
        try:
            return self._zip.read(name)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise CheckpointFormatError(
                f"{self.path}: truncated or corrupt zip entry {short_repr(name)} ({clip(exc)})"
            ) from None

    def _zip_persistent_load(self, pid) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {short_repr(pid)}")
        _, storage_type, key, _location, numel = pid
        storage_type = _storage_marker(storage_type, "storage")
        if not isinstance(key, str) or len(key) > 256:
            raise pickle.UnpicklingError(f"bad storage key {short_repr(key)}")
        numel = _int(numel, f"storage {short_repr(key)} size")
        ref = self._zip_storages.get(key)
        if ref is not None:
            if not ref.same(StorageRef(key, storage_type.dtype, numel)):
                raise pickle.UnpicklingError(f"storage {key} is declared twice with different types or sizes")
            return ref
        name = f"{self._zip_prefix}data/{key}"
        info = self._entry(name)
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise CheckpointFormatError(
                f"{self.path}: storage entry {short_repr(name)} is compressed or encrypted; torch.save stores "
                "storages uncompressed (re-save the checkpoint with torch.save)"
            )
        nbytes = numel * _numpy_dtype_of(storage_type.dtype, self.byteorder).itemsize
        start = self._data_offset(info)
        if nbytes > info.compress_size:
            raise CheckpointFormatError(
                f"{self.path}: storage {short_repr(key)} declares {numel} elements ({nbytes} bytes), its entry "
                f"holds {info.compress_size} bytes"
            )
        self._spans[key] = (start, numel)
        ref = self._zip_storages[key] = StorageRef(key, storage_type.dtype, numel)
        return ref

    def _open_legacy(self) -> None:
        self.format = "legacy"
        fh = self._fh
        magic = safe_loads(fh, self.path)
        if magic != LEGACY_MAGIC:
            raise CheckpointFormatError(
                f"{self.path}: a pickle but not a PyTorch checkpoint (no torch magic number); "
                "only torch.save files are read"
            )
        protocol = safe_loads(fh, self.path)
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointFormatError(
                f"{self.path}: unsupported legacy protocol version {short_repr(protocol)}"
            )
        sys_info = safe_loads(fh, self.path)
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            self.byteorder = "big"
        roots: dict[str, StorageRef] = {}

        def persistent_load(pid):
            if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
                kind = pid[0] if isinstance(pid, tuple) and pid else pid
                raise pickle.UnpicklingError(
                    f"unsupported persistent id {short_repr(kind, 40)} (only storages)"
                )
            _, storage_type, key, _location, numel, view = pid
            storage_type = _storage_marker(storage_type, "storage")
            if not isinstance(key, str) or len(key) > 256:
                raise pickle.UnpicklingError(f"bad storage key {short_repr(key)}")
            numel = _int(numel, f"storage {short_repr(key)} size")
            nbytes = numel * _numpy_dtype_of(storage_type.dtype, self.byteorder).itemsize
            if nbytes > self.size:  # the bytes must follow in this file (checked exactly below)
                raise pickle.UnpicklingError(
                    f"storage {short_repr(key)} declares {nbytes} bytes, more than the {self.size}-byte file"
                )
            root = roots.setdefault(key, StorageRef(key, storage_type.dtype, numel))
            if not root.same(StorageRef(key, storage_type.dtype, numel)):
                raise pickle.UnpicklingError(f"storage {key} is declared twice with different types or sizes")
            if view is None:
                return root
            if not (isinstance(view, tuple) and len(view) == 3):
                raise pickle.UnpicklingError(f"bad storage view {short_repr(view)}")
            view_key, offset, view_size = view
            offset, view_size = _int(offset, "view offset"), _int(view_size, "view size")
            if offset + view_size > root.numel:
                raise pickle.UnpicklingError(f"storage view {short_repr(view_key)} outside its storage")
            return StorageRef(key, root.dtype, view_size, root.offset + offset)

        self.root = safe_loads(fh, self.path, persistent_load)
        keys = safe_loads(fh, self.path)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointFormatError(f"{self.path}: bad storage key list")
        endian = "<" if self.byteorder == "little" else ">"
        for key in keys:
            header = fh.read(8)
            if len(header) < 8:
                raise CheckpointFormatError(f"{self.path}: truncated (storage {short_repr(key)} is missing)")
            (numel,) = struct.unpack(endian + "q", header)
            ref = roots.get(key)
            if ref is None or numel != ref.numel or key in self._spans:
                raise CheckpointFormatError(
                    f"{self.path}: storage {short_repr(key)} does not match the object pickle"
                )
            nbytes = numel * _numpy_dtype_of(ref.dtype, self.byteorder).itemsize
            start = fh.tell()
            if start + nbytes > self.size:
                raise CheckpointFormatError(
                    f"{self.path}: truncated (storage {short_repr(key)} needs {nbytes} bytes, "
                    f"{self.size - start} are left)"
                )
            self._spans[key] = (start, numel)
            fh.seek(nbytes, io.SEEK_CUR)
        missing = sorted(set(roots) - set(self._spans))
        if missing:
            shown = ", ".join(short_repr(k, 20) for k in missing[:5])
            raise CheckpointFormatError(f"{self.path}: storages {shown} are missing")

    # -- reading storages ----------------------------------------------------------------------------------------

    def _storage(self, ref: StorageRef) -> np.ndarray:
        """The whole storage ``ref.key``: a read-only view of the file's memory map, in file byte order."""
        if self._map is None:
            self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        start, numel = self._spans[ref.key]
        dtype = _numpy_dtype_of(ref.dtype, self.byteorder)
        if start + numel * dtype.itemsize > len(self._map):  # checked at opening; the file may have changed
            raise CheckpointFormatError(f"{self.path}: storage {short_repr(ref.key)} is cut short")
        return np.frombuffer(self._map, dtype=dtype, count=numel, offset=start)

    def array(self, ref: TensorRef, last_use: bool = False) -> np.ndarray:
        """The tensor's values as a C-contiguous numpy array in native byte order (bfloat16 → float32).

        A tensor with the same view of the same storage as one already returned (and still alive) gets that same
        array (marked read-only then). ``last_use`` is accepted for compatibility and ignored: storages are views
        of the memory map, never cached copies.
        """
        key = ref.view_key
        shared = self._arrays.get(key)
        if shared is not None:
            shared.flags.writeable = False
            return shared
        storage = self._storage(ref.storage)
        itemsize = storage.dtype.itemsize
        start = ref.storage.offset + ref.offset
        count = _numel(ref.size)
        out_itemsize = 4 if ref.dtype == "bfloat16" else itemsize
        self._made += count * out_itemsize
        if self._made > 2 * self.size + (1 << 20):
            raise CheckpointFormatError(
                f"{self.path}: its tensors overlap so much that reading them would take more than twice the "
                "file's size (crafted file?)"
            )
        view = self._strided(storage, start, ref, itemsize)
        if ref.dtype == "bfloat16":
            array = (view.astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.array(view, dtype=view.dtype.newbyteorder("="), order="C", copy=True)
        self._arrays[key] = array
        self._release(ref.storage.key, itemsize)
        return array

    def _release(self, key: str, itemsize: int) -> None:
        """Drop the storage's pages from this process's resident set (the page cache keeps them for re-reads)."""
        start, numel = self._spans[key]
        low = start - start % mmap.PAGESIZE
        with contextlib.suppress(AttributeError, OSError, ValueError):
            self._map.madvise(mmap.MADV_DONTNEED, low, start + numel * itemsize - low)

    def _strided(self, storage: np.ndarray, start: int, ref: TensorRef, itemsize: int) -> np.ndarray:
        if _numel(ref.size) == 0:
            return np.empty(ref.size, dtype=storage.dtype)
        last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if last >= storage.size:  # never let as_strided read outside the buffer
            raise CheckpointFormatError(
                f"{self.path}: a tensor reaches past the end of storage {short_repr(ref.storage.key)}"
            )
        strides = tuple(s * itemsize for s in ref.stride)
        return np.lib.stride_tricks.as_strided(
            storage[start:], shape=ref.size, strides=strides, writeable=False
        )

    def arrays(self, refs: dict[str, TensorRef]):
        """Yield ``(key, array)`` for each tensor (equal views share one array)."""
        for key, ref in refs.items():
            yield key, self.array(ref)


def load(path: str | os.PathLike) -> Any:
    """The whole object graph with every tensor as a numpy array (convenient for small files and tests)."""
    with PthFile(path) as pth:
        return materialize(pth.root, pth)


def materialize(obj: Any, pth: PthFile) -> Any:
    if isinstance(obj, TensorRef):
        return pth.array(obj)
    if isinstance(obj, NumpyArray):
        return obj.__dict__.get("array")
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = materialize(v, pth)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(materialize(v, pth) for v in obj)
    return obj
