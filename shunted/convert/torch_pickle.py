"""Read PyTorch ``.pth`` files without torch and without running anything named in them.

Every pickle in the file goes through the allow-list unpickler of :mod:`shunted.convert.safe_pickle`. Two
containers are understood:

* zip (torch >= 1.6): ``<folder>/data.pkl`` (the object graph; storages are persistent ids), ``<folder>/byteorder``
  and one entry ``<folder>/data/<key>`` per storage;
* legacy pickle stream (``_use_new_zipfile_serialization=False``): magic number, protocol version and sys-info
  pickles, the object pickle, the list of storage keys, then each storage as an int64 element count + raw bytes.

Tensors come out as :class:`TensorRef` (storage, offset, size, stride); their bytes are read only when
:meth:`PthFile.array` asks for them, so the optimizer state of a training checkpoint is never loaded.
bfloat16 storages (numpy has no bfloat16) are widened to float32 exactly (bits << 16).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
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
    _Marker,
    safe_loads,
)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _storage_marker(value, what: str) -> _Marker:
    if not isinstance(value, _Marker) or value.dtype is None:
        raise pickle.UnpicklingError(f"{what}: expected a torch storage type, got {value!r}")
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
        self._zip: zipfile.ZipFile | None = None
        self._zip_prefix = ""
        self._legacy_offsets: dict[str, tuple[int, int]] = {}
        self._zip_storages: dict[str, StorageRef] = {}
        self._cache: dict[str, np.ndarray] = {}
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
        self._cache.clear()
        if self._zip is not None:
            self._zip.close()
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
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CheckpointFormatError(f"{self.path}: truncated or corrupt zip archive ({exc})") from None
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
                raise CheckpointFormatError(f"{self.path}: unknown byteorder {self.byteorder!r}")
        self.root = safe_loads(self._read_entry(pkls[0]), self.path, self._zip_persistent_load)

    def _read_entry(self, name: str) -> bytes:
        try:
            return self._zip.read(name)
        except KeyError:
            raise CheckpointFormatError(f"{self.path}: zip entry {name} is missing") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointFormatError(
                f"{self.path}: truncated or corrupt zip entry {name} ({exc})"
            ) from None

    def _zip_persistent_load(self, pid) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        storage_type = _storage_marker(storage_type, "storage")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"bad storage id {pid!r:.80}")
        ref = self._zip_storages.setdefault(key, StorageRef(key, storage_type.dtype, numel))
        if ref != StorageRef(key, storage_type.dtype, numel):
            raise pickle.UnpicklingError(f"storage {key} is declared twice with different types or sizes")
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
            raise CheckpointFormatError(f"{self.path}: unsupported legacy protocol version {protocol!r}")
        sys_info = safe_loads(fh, self.path)
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            self.byteorder = "big"
        roots: dict[str, StorageRef] = {}

        def persistent_load(pid):
            if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
                kind = pid[0] if isinstance(pid, tuple) and pid else pid
                raise pickle.UnpicklingError(f"unsupported persistent id {kind!r:.40} (only storages)")
            _, storage_type, key, _location, numel, view = pid
            storage_type = _storage_marker(storage_type, "storage")
            if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
                raise pickle.UnpicklingError(f"bad storage id {pid!r:.80}")
            root = roots.setdefault(key, StorageRef(key, storage_type.dtype, numel))
            if view is None:
                return root
            view_key, offset, view_size = view
            if not (isinstance(offset, int) and isinstance(view_size, int)) or not (
                0 <= offset and offset + view_size <= root.numel
            ):
                raise pickle.UnpicklingError(f"storage view {view_key!r} outside its storage")
            return StorageRef(key, root.dtype, view_size, root.offset + offset)

        self.root = safe_loads(fh, self.path, persistent_load)
        keys = safe_loads(fh, self.path)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointFormatError(f"{self.path}: bad storage key list")
        endian = "<" if self.byteorder == "little" else ">"
        for key in keys:
            header = fh.read(8)
            if len(header) < 8:
                raise CheckpointFormatError(f"{self.path}: truncated (storage {key} is missing)")
            (numel,) = struct.unpack(endian + "q", header)
            ref = roots.get(key)
            if ref is None or numel != ref.numel:
                raise CheckpointFormatError(f"{self.path}: storage {key} does not match the object pickle")
            self._legacy_offsets[key] = (fh.tell(), numel)
            fh.seek(numel * _numpy_dtype_of(ref.dtype, self.byteorder).itemsize, io.SEEK_CUR)
        missing = sorted(set(roots) - set(self._legacy_offsets))
        if missing:
            raise CheckpointFormatError(f"{self.path}: storages {', '.join(missing[:5])} are missing")

    # -- reading storages ----------------------------------------------------------------------------------------

    def _storage(self, ref: StorageRef) -> np.ndarray:
        """The whole storage ``ref.key`` as a 1-D array in file byte order (cached while the file is open)."""
        cached = self._cache.get(ref.key)
        if cached is not None:
            return cached
        dtype = _numpy_dtype_of(ref.dtype, self.byteorder)
        if self._zip is not None:
            buf = self._read_zip_storage(f"{self._zip_prefix}data/{ref.key}", dtype.itemsize * ref.numel)
        else:
            offset, numel = self._legacy_offsets[ref.key]
            buf = bytearray(numel * dtype.itemsize)
            self._fh.seek(offset)
            if self._fh.readinto(buf) != len(buf):
                raise CheckpointFormatError(f"{self.path}: truncated (storage {ref.key} is cut short)")
        array = np.frombuffer(buf, dtype=dtype)
        self._cache[ref.key] = array
        return array

    def _read_zip_storage(self, name: str, nbytes: int) -> bytearray:
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise CheckpointFormatError(f"{self.path}: storage entry {name} is missing") from None
        if info.file_size < nbytes:
            raise CheckpointFormatError(
                f"{self.path}: storage {name} has {info.file_size} bytes, needs {nbytes}"
            )
        buf = bytearray(nbytes)
        if info.compress_type == zipfile.ZIP_STORED:
            # Read straight into the buffer (no intermediate bytes object): offset from the local header.
            self._fh.seek(info.header_offset)
            local = self._fh.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise CheckpointFormatError(f"{self.path}: corrupt zip entry {name}")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            self._fh.seek(info.header_offset + 30 + name_len + extra_len)
            if self._fh.readinto(buf) != nbytes:
                raise CheckpointFormatError(f"{self.path}: truncated zip entry {name}")
        else:
            try:
                with self._zip.open(info) as fh:
                    view = memoryview(buf)
                    got = 0
                    while got < nbytes:
                        n = fh.readinto(view[got:])
                        if not n:
                            break
                        got += n
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise CheckpointFormatError(f"{self.path}: corrupt zip entry {name} ({exc})") from None
            if got != nbytes:
                raise CheckpointFormatError(f"{self.path}: truncated zip entry {name}")
        return buf

    def array(self, ref: TensorRef, last_use: bool = False) -> np.ndarray:
        """The tensor's values as a numpy array in native byte order (bfloat16 → float32).

        With ``last_use`` (no other tensor will read this storage) a tensor that is its whole storage, contiguous,
        is returned without a copy and the storage leaves the cache, keeping peak memory near the file size.
        """
        storage = self._storage(ref.storage)
        if last_use:
            self._cache.pop(ref.storage.key, None)
        itemsize = storage.dtype.itemsize
        start = ref.storage.offset + ref.offset
        count = int(np.prod(ref.size, dtype=np.int64))
        if ref.dtype == "bfloat16":
            flat = self._strided(storage, start, ref, itemsize)
            return (flat.astype(np.uint32) << 16).view(np.float32)
        native = storage.dtype.isnative or storage.dtype.itemsize == 1
        if (
            last_use
            and native
            and start == 0
            and count == storage.size
            and _is_contiguous(ref.size, ref.stride)
        ):
            return storage.reshape(ref.size)
        view = self._strided(storage, start, ref, itemsize)
        return np.array(view, dtype=view.dtype.newbyteorder("="), order="C", copy=True)

    def _strided(self, storage: np.ndarray, start: int, ref: TensorRef, itemsize: int) -> np.ndarray:
        if int(np.prod(ref.size, dtype=np.int64)) == 0:
            return np.empty(ref.size, dtype=storage.dtype)
        last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if last >= storage.size:  # never let as_strided read outside the buffer
            raise CheckpointFormatError(
                f"{self.path}: a tensor reaches past the end of storage {ref.storage.key}"
            )
        strides = tuple(s * itemsize for s in ref.stride)
        return np.lib.stride_tricks.as_strided(
            storage[start:], shape=ref.size, strides=strides, writeable=False
        )

    def arrays(self, refs: dict[str, TensorRef]):
        """Yield ``(key, array)`` for each tensor, reading each storage once and dropping it after its last use."""
        remaining = collections.Counter(ref.storage.key for ref in refs.values())
        for key, ref in refs.items():
            remaining[ref.storage.key] -= 1
            yield key, self.array(ref, last_use=remaining[ref.storage.key] == 0)


def _is_contiguous(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for n, s in zip(reversed(size), reversed(stride), strict=True):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


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
