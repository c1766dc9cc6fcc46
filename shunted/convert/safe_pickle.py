"""The allow-list unpickler shared by every pickle-based format (``.pth`` pieces and ``.pdparams``).

A normal unpickler imports and calls whatever a file names (``os.system`` included). This one resolves globals
from an allow-list only (like ``torch.load(weights_only=True)``): tensor-rebuild functions, storage types,
dtypes, ``collections.OrderedDict``, numpy's numeric array/scalar constructors and a few plain containers.
Every allowed global resolves to an object of this module — never to the real function — and anything else
raises :class:`UnsafeCheckpointError` naming ``module.name`` before a single call is made. ``argparse.Namespace``
(the ``args`` of training checkpoints) becomes an inert record of its state. The allowed objects are immutable,
so a pickle's BUILD opcode cannot patch them either.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import CheckpointFormatError, UnsafeCheckpointError

# torch storage / dtype names → numpy dtype ("bfloat16" is handled by hand).
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}
TORCH_DTYPES = {
    "float32": "float32",
    "float": "float32",
    "float16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "float64": "float64",
    "double": "float64",
    "int64": "int64",
    "long": "int64",
    "int32": "int32",
    "int": "int32",
    "int16": "int16",
    "short": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "bool",
}


# ---------------------------------------------------------------------------------------------------------------
# Inert objects the allow-list resolves to


class _Frozen(type):
    """Metaclass refusing attribute assignment, so a pickle's BUILD cannot patch an allowed class."""

    def __setattr__(cls, name, value):
        raise pickle.UnpicklingError(f"cannot set attribute {name!r} of {cls.__name__}")


class _Marker:
    """A named, immutable stand-in for a torch type or dtype; calling it is refused."""

    __slots__ = ("qualname", "dtype")

    def __init__(self, qualname: str, dtype: str | None = None):
        object.__setattr__(self, "qualname", qualname)
        object.__setattr__(self, "dtype", dtype)

    def __setattr__(self, name, value):
        raise pickle.UnpicklingError(f"cannot set attribute {name!r} of {self.qualname}")

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(f"{self.qualname} is a type marker and cannot be called")

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


class _Function:
    """An allowed callable: immutable wrapper around this module's own implementation."""

    __slots__ = ("qualname", "impl")

    def __init__(self, qualname: str, impl):
        object.__setattr__(self, "qualname", qualname)
        object.__setattr__(self, "impl", impl)

    def __setattr__(self, name, value):
        raise pickle.UnpicklingError(f"cannot set attribute {name!r} of {self.qualname}")

    def __call__(self, *args):
        return self.impl(*args)

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


class PickledObject(metaclass=_Frozen):
    """Inert record of an allowed plain object (e.g. ``argparse.Namespace``): its state, never its code."""

    qualname = "object"

    def __init__(self, *args, **kwargs):
        self.__dict__["args"] = args
        self.__dict__["kwargs"] = kwargs

    def __setstate__(self, state):
        self.__dict__["state"] = state

    @property
    def state(self) -> dict:
        state = self.__dict__.get("state")
        return dict(state) if isinstance(state, dict) else {}

    def __getattr__(self, name):
        state = self.__dict__.get("state")
        if isinstance(state, dict) and name in state:
            return state[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"{self.qualname}({', '.join(f'{k}={v!r}' for k, v in self.state.items())})"


class Namespace(PickledObject):
    qualname = "argparse.Namespace"


@dataclass(frozen=True)
class StorageRef:
    """One storage of the file: its key, element dtype and count; ``offset`` (elements) for legacy views."""

    key: str
    dtype: str
    numel: int
    offset: int = 0


@dataclass(frozen=True)
class TensorRef:
    """A tensor as a strided view of a storage; :meth:`PthFile.array` turns it into a numpy array."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> str:
        return self.storage.dtype


# ---------------------------------------------------------------------------------------------------------------
# Implementations of the allowed callables (arguments are validated: they come from an untrusted file)


def _ints(value, what: str) -> tuple[int, ...]:
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of ints, got {value!r}")
    return value


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise pickle.UnpicklingError(
            f"tensor storage must be a storage reference, got {type(storage).__name__}"
        )
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad storage offset {storage_offset!r}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"bad tensor size/stride {size}/{stride}")
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise pickle.UnpicklingError(
                f"tensor of size {size} at offset {storage_offset} exceeds its storage of {storage.numel} elements"
            )
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    if not isinstance(data, TensorRef):
        raise pickle.UnpicklingError("a parameter must wrap a tensor")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if not (isinstance(func, _Function) and isinstance(new_type, _Marker) and isinstance(args, tuple)):
        raise pickle.UnpicklingError("unsupported tensor subclass reconstruction")
    if new_type.qualname not in ("torch.Tensor", "torch.nn.parameter.Parameter"):
        raise pickle.UnpicklingError(f"unsupported tensor type {new_type.qualname}")
    return func(*args)


def _size(*args):
    return tuple(_ints(args[0] if args else (), "size"))


def _device(*args):
    return ":".join(str(a) for a in args)


def _codecs_encode(text, encoding="utf-8", *_ignored):
    # Protocol-2 pickles write bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed for latin1 bytes")
    return text.encode("latin1")


def _plain(factory):
    def build(*args):
        if any(isinstance(a, _Marker | _Function | type) for a in args):
            raise pickle.UnpicklingError(f"{factory.__name__}() of a type is not allowed")
        return factory(*args)

    return build


def _path(*parts):
    if not all(isinstance(p, str) for p in parts):
        raise pickle.UnpicklingError("a path must be made of strings")
    return os.path.join(*parts) if parts else "."


# numpy scalars and arrays (found in some training checkpoints and in every .pdparams).


class _NumpyDType(_Marker):
    __slots__ = ()

    def __setstate__(self, state):  # (version, byteorder, ...): only the byte order matters here
        if isinstance(state, tuple) and len(state) > 1 and state[1] in (">", "<", "|", "="):
            dtype = np.dtype(self.dtype).newbyteorder(state[1]) if state[1] in "<>" else np.dtype(self.dtype)
            object.__setattr__(self, "dtype", dtype.str)


def _numpy_dtype(spec, *_ignored):
    if not isinstance(spec, str):
        raise pickle.UnpicklingError("numpy dtype spec must be a string")
    dtype = np.dtype(spec)
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not a plain numeric dtype")
    return _NumpyDType("numpy.dtype", dtype.str)


class NumpyArray(PickledObject):
    """A numpy array pickled by numpy's ``__reduce__``: built from its state, numeric dtypes only."""

    qualname = "numpy.ndarray"

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("bad numpy array state")
        _version, shape, dtype, fortran, raw = state
        shape = _ints(shape, "shape")
        if not isinstance(dtype, _NumpyDType) or not isinstance(raw, bytes | bytearray):
            raise pickle.UnpicklingError("numpy array state must hold a numeric dtype and raw bytes")
        dt = np.dtype(dtype.dtype)
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise pickle.UnpicklingError(f"numpy array data has {len(raw)} bytes, shape {shape} needs more")
        array = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C")
        self.__dict__["array"] = array if dt.isnative else array.astype(dt.newbyteorder("="))


def _numpy_reconstruct(subtype, shape, _typecode):
    if not (isinstance(subtype, _Marker) and subtype.qualname == "numpy.ndarray"):
        raise pickle.UnpicklingError("numpy _reconstruct is only allowed for numpy.ndarray")
    return NumpyArray()


def _numpy_frombuffer(buf, dtype, shape, order):
    # Protocol-5 pickles of numpy arrays: _frombuffer(bytes-like, dtype, shape, order).
    if (
        not isinstance(buf, bytes | bytearray)
        or not isinstance(dtype, _NumpyDType)
        or order not in ("C", "F")
    ):
        raise pickle.UnpicklingError("numpy _frombuffer needs raw bytes, a numeric dtype and an order")
    shape = _ints(shape, "shape")
    dt = np.dtype(dtype.dtype)
    if len(buf) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
        raise pickle.UnpicklingError(f"numpy array data has {len(buf)} bytes, not what shape {shape} needs")
    array = np.frombuffer(buf, dtype=dt).reshape(shape, order=order)
    return array if dt.isnative else array.astype(dt.newbyteorder("="))


def _numpy_scalar(dtype, raw=b""):
    if not isinstance(dtype, _NumpyDType) or not isinstance(raw, bytes):
        raise pickle.UnpicklingError("numpy scalar needs a numeric dtype and bytes")
    return np.frombuffer(raw, dtype=np.dtype(dtype.dtype), count=1)[0]


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Size"): _size,
        ("torch", "device"): _device,
        ("_codecs", "encode"): _codecs_encode,
        ("builtins", "set"): _plain(set),
        ("builtins", "frozenset"): _plain(frozenset),
        ("builtins", "complex"): _plain(complex),
        ("builtins", "bytearray"): _plain(bytearray),
        ("argparse", "Namespace"): Namespace,
        ("pathlib", "PosixPath"): _path,
        ("pathlib", "WindowsPath"): _path,
        ("pathlib", "PurePosixPath"): _path,
        ("pathlib", "PureWindowsPath"): _path,
    }
    out: dict[tuple[str, str], Any] = {}
    for (module, name), impl in table.items():
        if callable(impl) and not isinstance(impl, type):
            impl = _Function(f"{module}.{name}", impl)
        out[(module, name)] = impl
    for name, dtype in STORAGE_DTYPES.items():
        out[("torch", name)] = _Marker(f"torch.{name}", dtype)
        out[("torch.storage", name)] = _Marker(f"torch.{name}", dtype)
    out[("torch.storage", "TypedStorage")] = _Marker("torch.storage.TypedStorage")
    for name, dtype in TORCH_DTYPES.items():
        out[("torch", name)] = _Marker(f"torch.{name}", dtype)
    out[("torch", "Tensor")] = _Marker("torch.Tensor")
    out[("torch.nn.parameter", "Parameter")] = _Marker("torch.nn.parameter.Parameter")
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(module, "_reconstruct")] = _Function(f"{module}._reconstruct", _numpy_reconstruct)
        out[(module, "scalar")] = _Function(f"{module}.scalar", _numpy_scalar)
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        out[(module, "_frombuffer")] = _Function(f"{module}._frombuffer", _numpy_frombuffer)
    out[("numpy", "dtype")] = _Function("numpy.dtype", _numpy_dtype)
    out[("numpy", "ndarray")] = _Marker("numpy.ndarray")
    return out


ALLOWED_GLOBALS = _allowed_globals()


class SafeUnpickler(pickle.Unpickler):
    """``find_class`` is the gate: every global resolves through :data:`ALLOWED_GLOBALS` or is refused.

    All opcodes that call something (REDUCE, NEWOBJ, INST, OBJ, BUILD via ``__setstate__``) can only reach
    objects obtained through ``find_class``, so nothing outside this module ever runs.
    """

    def __init__(self, file: BinaryIO, persistent_load=None):
        super().__init__(file, encoding="latin1")
        self._persistent = persistent_load

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent(pid)


def _refused(path: Path, exc: UnsafeCheckpointError) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path}: refused: the pickle names {exc.args[0]}, which a weights file never needs "
        "(not on the allow-list); nothing from the file was run. A file holding a whole pickled model must be "
        "re-saved as its state_dict"
    )


def safe_loads(data: bytes | BinaryIO, path: Path | str = "<bytes>", persistent_load=None) -> Any:
    """Unpickle with the allow-list (used for ``.pdparams`` and the pieces of ``.pth`` files)."""
    file = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    try:
        return SafeUnpickler(file, persistent_load).load()
    except UnsafeCheckpointError as exc:
        raise _refused(Path(path), exc) from None
    except CheckpointFormatError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
    ) as exc:
        raise CheckpointFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    except MemoryError:
        raise CheckpointFormatError(f"{path}: corrupt pickle (asks for an impossible allocation)") from None
