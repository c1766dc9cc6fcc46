"""The allow-list unpickler shared by every pickle-based format (``.pth`` pieces, ``.pdparams``, ``.pdckpt``).

A normal unpickler imports and calls whatever a file names (``os.system`` included). This one resolves globals
from an allow-list only (like ``torch.load(weights_only=True)``): tensor-rebuild functions, storage types,
dtypes, ``collections.OrderedDict``, numpy's numeric array/scalar constructors and a few plain containers.
Every allowed global resolves to an object of this module — never to the real function — and anything else
raises :class:`UnsafeCheckpointError` naming ``module.name`` before a single call is made. ``argparse.Namespace``
(the ``args`` of training checkpoints) becomes an inert record of its state. The allowed objects are immutable,
so a pickle's BUILD opcode cannot patch them either.

Memory and time stay bounded by the size of the pickle itself (a 39-byte file must not allocate gigabytes):

1. :func:`scan_pickle` walks the opcodes before anything is unpickled, without copying their data, and refuses
   a length field (bytes, strings, frames) larger than what is left of the input, a memo index no pickler
   writes (CPython sizes its memo table by the largest index: 11 bytes would allocate 4 GB), tuples nested
   deeper than :data:`MAX_DEPTH` (hashing them would overflow the C stack) and hashing work (dict keys, set
   items) out of proportion with the input.
2. The allowed callables check their arguments and charge what they create or walk to a budget of
   :data:`BUDGET_FACTOR` × the pickle's length (``bytearray(0x35940000)``, a size list referenced a million
   times through the memo, a repeated ``_codecs.encode`` of one big string are refused).
3. :func:`check_graph` refuses an unpickled object graph that is cyclic, deeper than :data:`MAX_DEPTH` or whose
   expansion as a tree is out of proportion with the input (shared references nested to blow up a recursive walk).

Every error is one line and quotes untrusted values through :func:`short_repr` (at most a few dozen characters).
"""

from __future__ import annotations

import collections
import contextvars
import io
import mmap
import os
import pickle
import pickletools
import reprlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import CheckpointFormatError, UnsafeCheckpointError

MAX_DEPTH = 100  # nesting of containers (state dicts need 3–5; Python's recursion limit is 1000)
MAX_RANK = 64  # dimensions of a tensor / array (torch and numpy allow at most 64)
MAX_INT = 2**62  # sizes, strides, offsets and element counts
BUDGET_FACTOR = 4  # work of the allowed callables / hashing / tree size: this × pickle length + BUDGET_SLACK
BUDGET_SLACK = 1 << 20
MAX_MESSAGE = 300  # characters of an exception text quoted in an error

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
# numpy dtype specs a numeric array may name (numpy pickles dtypes as numpy.dtype('f4', False, True)).
NUMPY_DTYPE_SPECS = frozenset(
    ["b1", "?", "bool"]
    + [f"{k}{n}" for k in "iu" for n in (1, 2, 4, 8)]
    + ["f2", "f4", "f8", "c8", "c16"]
    + ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
    + ["float16", "float32", "float64", "complex64", "complex128"]
)


# ---------------------------------------------------------------------------------------------------------------
# Bounded quoting of untrusted values


class _ShortRepr(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 2, 40, 40, 40
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 6

    def repr_int(self, x, level):
        if x.bit_length() > 128:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_instance(self, x, level):
        return f"<{type(x).__name__}>"


_SHORT = _ShortRepr()


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message: bounded in size and time whatever ``value`` holds."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - a repr of untrusted data must never be the error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------------------
# Work budget of one unpickling (the allowed callables charge it)


class _Budget:
    __slots__ = ("left", "limit")

    def __init__(self, limit: int):
        self.left = self.limit = limit

    def charge(self, amount: int, what: str) -> None:
        self.left -= amount
        if self.left < 0:
            raise PickleBoundsError(
                f"{what} would make the pickle cost more than {self.limit} units of work/memory, out of "
                "proportion with its size (crafted file)"
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "shunted_pickle_budget", default=None
)


def _charge(amount: int, what: str) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(amount, what)


def _length(value) -> int:
    """Size used to charge ``value``: bytes of strings/buffers, items of containers, 1 otherwise."""
    if isinstance(value, str | bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, list | tuple | dict | set | frozenset):
        return len(value)
    return 1


# ---------------------------------------------------------------------------------------------------------------
# 1. Opcode scan before unpickling


class _Node:
    """What the scan knows of a stack item: tree size and tuple depth (for hashing), key weight of dicts."""

    __slots__ = ("size", "depth", "keys")

    def __init__(self, size: int = 1, depth: int = 0):
        self.size, self.depth, self.keys = size, depth, 0


_LEAF = _Node()
_MARK = pickletools.markobject


class _Corrupt(Exception):
    pass


class _Bounds(_Corrupt):
    pass


class PickleBoundsError(pickle.UnpicklingError):
    """The pickle is refused before or while unpickling: it asks for more than its size can justify."""


def scan_pickle(fh: BinaryIO, end: int) -> int:
    """Check the pickle starting at ``fh``'s position (ending before offset ``end``); returns its length.

    Nothing is unpickled and no argument is copied: the input is looked at through a memory view (a memory map
    for files) and large arguments are skipped once their declared length was checked against the bytes left.
    ``fh`` is left where the pickle starts.
    """
    origin = begin = fh.tell()
    mapped = None
    try:
        if isinstance(fh, io.BytesIO):
            view = fh.getbuffer()
        else:
            try:
                mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if end > 0 else None
                view = memoryview(mapped if mapped is not None else b"")
            except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # not a plain file
                view = memoryview(b"".join(iter(lambda: fh.read(1 << 20), b"")))
                begin, end = 0, end - origin
        try:
            return _scan(view, begin, min(end, len(view)))
        finally:
            view.release()
    except _Bounds as exc:
        raise PickleBoundsError(str(exc)) from None
    except _Corrupt as exc:
        raise pickle.UnpicklingError(str(exc)) from None
    finally:
        if mapped is not None:
            mapped.close()
        fh.seek(origin)


def _line_end(view: memoryview, pos: int, end: int) -> int:
    """Index just past the next newline at or after ``pos`` (before ``end``)."""
    step = 256
    at = pos
    while at < end:
        chunk = bytes(view[at : min(end, at + step)])
        found = chunk.find(b"\n")
        if found >= 0:
            return at + found + 1
        at += len(chunk)
        step = min(step * 4, 1 << 20)
    raise _Corrupt("an opcode's text argument is not terminated")


# kinds of opcodes for the scan
_K_OTHER, _K_MARK, _K_TUPLE_N, _K_TUPLE, _K_EMPTY_TUPLE, _K_NEW, _K_DICT, _K_SETITEM, _K_SETITEMS = range(9)
_K_SETS, _K_FROZENSET, _K_APPEND, _K_APPENDS, _K_BUILD, _K_POP, _K_DUP, _K_PUT, _K_MEMOIZE, _K_GET = range(
    9, 19
)
_K_STOP, _K_FRAME = 19, 20
_KINDS = {
    "MARK": _K_MARK,
    "TUPLE1": _K_TUPLE_N,
    "TUPLE2": _K_TUPLE_N,
    "TUPLE3": _K_TUPLE_N,
    "TUPLE": _K_TUPLE,
    "EMPTY_TUPLE": _K_EMPTY_TUPLE,
    "EMPTY_DICT": _K_NEW,
    "EMPTY_LIST": _K_NEW,
    "EMPTY_SET": _K_NEW,
    "DICT": _K_DICT,
    "SETITEM": _K_SETITEM,
    "SETITEMS": _K_SETITEMS,
    "ADDITEMS": _K_SETS,
    "FROZENSET": _K_FROZENSET,
    "APPEND": _K_APPEND,
    "APPENDS": _K_APPENDS,
    "BUILD": _K_BUILD,
    "POP": _K_POP,
    "DUP": _K_DUP,
    "PUT": _K_PUT,
    "BINPUT": _K_PUT,
    "LONG_BINPUT": _K_PUT,
    "MEMOIZE": _K_MEMOIZE,
    "GET": _K_GET,
    "BINGET": _K_GET,
    "LONG_BINGET": _K_GET,
    "STOP": _K_STOP,
    "FRAME": _K_FRAME,
}
_LENGTH_WIDTH = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}


def _op_table() -> list:
    """Per opcode byte: (name, kind, fixed arg bytes or -1, length width, signed, text lines, pops, marked, pushes)."""
    table: list = [None] * 256
    for op in pickletools.opcodes:
        n = op.arg.n if op.arg is not None else 0
        fixed = n if n >= 0 else -1
        width, signed = _LENGTH_WIDTH.get(n, (0, False))
        lines = (2 if op.name in ("GLOBAL", "INST") else 1) if n == pickletools.UP_TO_NEWLINE else 0
        before = op.stack_before
        marked = _MARK in before
        pops = before.index(_MARK) if marked else len(before)
        pushes = len([x for x in op.stack_after if x is not _MARK])
        table[ord(op.code)] = (
            op.name,
            _KINDS.get(op.name, _K_OTHER),
            fixed,
            width,
            signed,
            lines,
            pops,
            marked,
            pushes,
        )
    return table


_TABLE = _op_table()


def _scan(view: memoryview, start: int, end: int) -> int:  # noqa: C901 - one opcode table
    stack: list[_Node] = []
    marks: list[int] = []
    memo: dict[int, _Node] = {}
    count = 0
    hashing = 0
    budget = BUDGET_FACTOR * (end - start) + BUDGET_SLACK
    new_node = _Node

    def corrupt(what: str):
        raise _Corrupt(f"{what} (corrupt opcodes)")

    def pop_mark() -> list[_Node]:
        if not marks:
            corrupt("no MARK for a marked opcode")
        base = marks.pop()
        items = stack[base:]
        del stack[base:]
        return items

    def hashed(nodes) -> None:
        nonlocal hashing
        for node in nodes:
            hashing += node.size
        if hashing > budget:
            raise _Bounds(
                "hashing its dict keys and set items would take work out of proportion with its size"
            )

    def tuple_node(items: list[_Node]) -> _Node:
        depth = 1 + max((n.depth for n in items), default=0)
        if depth > MAX_DEPTH:
            raise _Bounds(f"tuples nested more than {MAX_DEPTH} deep")
        return _Node(min(1 + sum(n.size for n in items), budget + 1), depth)

    def floor() -> int:
        return marks[-1] if marks else 0

    pos = start
    while True:
        if pos >= end:
            raise _Corrupt("truncated (no STOP opcode)")
        entry = _TABLE[view[pos]]
        if entry is None:
            raise _Corrupt(f"invalid opcode {bytes(view[pos : pos + 1])!r} at offset {pos - start}")
        name, kind, fixed, width, signed, lines, pops, marked, pushes = entry
        pos += 1
        count += 1
        arg = 0
        if fixed > 0:
            if pos + fixed > end:
                raise _Corrupt("truncated")
            if kind == _K_PUT or kind == _K_GET or kind == _K_FRAME:
                arg = int.from_bytes(view[pos : pos + fixed], "little")
            pos += fixed
        elif width:
            if pos + width > end:
                raise _Corrupt("truncated")
            size = int.from_bytes(view[pos : pos + width], "little", signed=signed)
            pos += width
            if size < 0 or size > end - pos:
                raise _Bounds(f"{name} declares {size} bytes, only {max(end - pos, 0)} are left in the file")
            pos += size
        elif lines:
            first = pos
            for _ in range(lines):
                pos = _line_end(view, pos, end)
            if kind == _K_PUT or kind == _K_GET:
                text = bytes(view[first : pos - 1])
                if len(text) > 20 or not text.strip().isdigit():
                    raise _Corrupt(f"{name} index {short_repr(text)} is not a number")
                arg = int(text)
        if kind == _K_OTHER:
            if marked:
                pop_mark()
            if pops:
                if len(stack) - floor() < pops:
                    corrupt(f"{name} on a short stack")
                del stack[len(stack) - pops :]
            for _ in range(pushes):
                stack.append(new_node())
        elif kind == _K_GET:
            stack.append(memo.get(arg, _LEAF))
        elif kind == _K_NEW:
            stack.append(new_node())
        elif kind == _K_MARK:
            marks.append(len(stack))
        elif kind == _K_APPEND or kind == _K_SETITEM or kind == _K_BUILD or kind == _K_POP or kind == _K_DUP:
            need = {_K_APPEND: 2, _K_SETITEM: 3, _K_BUILD: 2, _K_POP: 1, _K_DUP: 1}[kind]
            if kind == _K_POP and marks and marks[-1] == len(stack):
                marks.pop()
                continue
            if len(stack) - floor() < need:
                corrupt(f"{name} on a short stack")
            if kind == _K_SETITEM:
                key = stack[-2]
                hashed((key,))
                stack[-3].keys = min(stack[-3].keys + key.size, budget + 1)
                del stack[-2:]
            elif kind == _K_BUILD:
                hashed((new_node(stack[-1].keys),))
                del stack[-1]
            elif kind == _K_DUP:
                stack.append(stack[-1])
            else:
                del stack[-1]
        elif kind == _K_PUT or kind == _K_MEMOIZE:
            if len(stack) - floor() < 1:
                corrupt("memo store of an empty stack")
            index = len(memo) if kind == _K_MEMOIZE else arg
            if index > count:  # picklers number memo entries 0, 1, 2, … as they go
                raise _Bounds(f"memo index {index} at opcode {count} (no pickler writes that)")
            memo[index] = stack[-1]
        elif kind == _K_TUPLE_N:
            n = int(name[-1])
            if len(stack) - floor() < n:
                corrupt(f"{name} on a short stack")
            items = stack[len(stack) - n :]
            del stack[len(stack) - n :]
            stack.append(tuple_node(items))
        elif kind == _K_TUPLE:
            stack.append(tuple_node(pop_mark()))
        elif kind == _K_EMPTY_TUPLE:
            stack.append(_Node(1, 1))
        elif kind == _K_SETITEMS or kind == _K_DICT:
            items = pop_mark()
            if len(items) % 2:
                corrupt(f"{name} with an odd number of items")
            keys = items[0::2]
            hashed(keys)
            weight = sum(k.size for k in keys)
            if kind == _K_DICT:
                node = new_node()
                node.keys = min(weight, budget + 1)
                stack.append(node)
            else:
                if len(stack) - floor() < 1:
                    corrupt("SETITEMS without a dict")
                stack[-1].keys = min(stack[-1].keys + weight, budget + 1)
        elif kind == _K_APPENDS:
            pop_mark()
            if len(stack) - floor() < 1:
                corrupt("APPENDS without a list")
        elif kind == _K_SETS or kind == _K_FROZENSET:
            hashed(pop_mark())
            if kind == _K_FROZENSET:
                stack.append(new_node())
            elif len(stack) - floor() < 1:
                corrupt("ADDITEMS without a set")
        elif kind == _K_FRAME:
            if arg > end - pos:
                raise _Bounds(f"a frame declares {arg} bytes, only {end - pos} follow")
        elif kind == _K_STOP:
            if len(stack) - floor() < 1:
                corrupt("STOP on an empty stack")
            return pos - start


# ---------------------------------------------------------------------------------------------------------------
# Inert objects the allow-list resolves to


class _Frozen(type):
    """Metaclass refusing attribute assignment, so a pickle's BUILD cannot patch an allowed class."""

    def __setattr__(cls, name, value):
        raise pickle.UnpicklingError(f"cannot set attribute {short_repr(name)} of {cls.__name__}")


class _Marker:
    """A named, immutable stand-in for a torch type or dtype; calling it is refused."""

    __slots__ = ("qualname", "dtype")

    def __init__(self, qualname: str, dtype: str | None = None):
        object.__setattr__(self, "qualname", qualname)
        object.__setattr__(self, "dtype", dtype)

    def __setattr__(self, name, value):
        raise pickle.UnpicklingError(f"cannot set attribute {short_repr(name)} of {self.qualname}")

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
        raise pickle.UnpicklingError(f"cannot set attribute {short_repr(name)} of {self.qualname}")

    def __call__(self, *args):
        _charge(1 + len(args), self.qualname)
        return self.impl(*args)

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


class PickledObject(metaclass=_Frozen):
    """Inert record of an allowed plain object (e.g. ``argparse.Namespace``): its state, never its code."""

    qualname = "object"

    def __init__(self, *args, **kwargs):
        _charge(1 + len(args) + len(kwargs), self.qualname)
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
        items = list(self.state.items())
        shown = ", ".join(f"{short_repr(k, 30)}={short_repr(v, 40)}" for k, v in items[:8])
        return f"{self.qualname}({shown}{', …' if len(items) > 8 else ''})"


class Namespace(PickledObject):
    qualname = "argparse.Namespace"


@dataclass(frozen=True, eq=False)  # identity semantics: hashing a crafted ref must stay O(1)
class StorageRef:
    """One storage of the file: its key, element dtype and count; ``offset`` (elements) for legacy views."""

    key: str
    dtype: str
    numel: int
    offset: int = 0

    def same(self, other: StorageRef) -> bool:
        return (self.key, self.dtype, self.numel, self.offset) == (
            other.key,
            other.dtype,
            other.numel,
            other.offset,
        )


@dataclass(frozen=True, eq=False)
class TensorRef:
    """A tensor as a strided view of a storage; :meth:`PthFile.array` turns it into a numpy array."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.size

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def view_key(self) -> tuple:
        """Identifies the region read: tensors with equal keys share one array."""
        s = self.storage
        return (s.key, s.dtype, s.offset, self.offset, self.size, self.stride)


# ---------------------------------------------------------------------------------------------------------------
# Implementations of the allowed callables (arguments are validated: they come from an untrusted file)


def _int(value, what: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < MAX_INT:
        raise pickle.UnpicklingError(f"{what} must be an integer in [{low}, 2**62), got {short_repr(value)}")
    return value


def _ints(value, what: str, low: int = 0) -> tuple[int, ...]:
    if not isinstance(value, list | tuple):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of ints, got {short_repr(value)}")
    if len(value) > MAX_RANK:
        raise pickle.UnpicklingError(f"tensor {what} has {len(value)} dimensions (at most {MAX_RANK})")
    _charge(len(value), f"tensor {what}")
    return tuple(_int(v, f"tensor {what}", low) for v in value)


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise pickle.UnpicklingError(
            f"tensor storage must be a storage reference, got {type(storage).__name__}"
        )
    storage_offset = _int(storage_offset, "storage offset")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(
            f"tensor size/stride of different ranks {short_repr(size)}/{short_repr(stride)}"
        )
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise pickle.UnpicklingError(
                f"tensor of size {short_repr(size)} at offset {storage_offset} exceeds its storage of "
                f"{storage.numel} elements"
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
    return _ints(args[0] if args else (), "size")


def _device(*args):
    if len(args) > 2 or not all(isinstance(a, str | int) and not isinstance(a, bool) for a in args):
        raise pickle.UnpicklingError("torch.device takes a type name and an index")
    if any(isinstance(a, str) and len(a) > 64 or isinstance(a, int) and not 0 <= a < 2**16 for a in args):
        raise pickle.UnpicklingError(f"bad torch.device {short_repr(args)}")
    return ":".join(str(a) for a in args)


def _codecs_encode(text, encoding="utf-8", *_ignored):
    # Protocol-2 pickles write bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed for latin1 bytes")
    _charge(len(text), "_codecs.encode")
    return text.encode("latin1")


def _small_number(value) -> bool:
    # numbers beyond 2**53 can be crafted to share one hash (quadratic set/dict building)
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (value != value or abs(value) < 2**53 or value in (float("inf"), float("-inf")))
    )


def _hashable_scalar(value) -> bool:
    return value is None or isinstance(value, str | bytes | bool) or _small_number(value)


def _set_of(factory):
    def build(*args):
        if len(args) > 1:
            raise pickle.UnpicklingError(f"{factory.__name__}() takes at most one argument")
        items = args[0] if args else ()
        if not isinstance(items, list | tuple | set | frozenset):
            raise pickle.UnpicklingError(f"{factory.__name__}() of a {type(items).__name__} is not allowed")
        _charge(len(items), factory.__name__)
        if not all(_hashable_scalar(v) for v in items):
            raise pickle.UnpicklingError(f"{factory.__name__}() items must be strings or small numbers")
        return factory(items)

    build.__name__ = factory.__name__
    return build


def _complex(real=0.0, imag=0.0):
    if not (_small_number(real) and _small_number(imag)):
        raise pickle.UnpicklingError("complex() takes two small real numbers")
    return complex(real, imag)


def _bytearray(*args):
    # Protocol-2 pickles write bytearray(b) as builtins.bytearray(str, 'latin-1'); a size is never pickled.
    if not args:
        return bytearray()
    data = args[0]
    if isinstance(data, str) and len(args) == 2 and args[1] in ("latin1", "latin-1"):
        _charge(len(data), "bytearray")
        return bytearray(data, "latin1")
    if isinstance(data, bytes | bytearray) and len(args) == 1:
        _charge(len(data), "bytearray")
        return bytearray(data)
    raise pickle.UnpicklingError(
        f"bytearray({short_repr(data)}): only bytes or a latin-1 string are allowed, never a size"
    )


def _ordered_dict(*args):
    if len(args) > 1:
        raise pickle.UnpicklingError("OrderedDict takes at most one argument")
    if args:
        items = args[0]
        if not isinstance(items, list | tuple | dict):
            raise pickle.UnpicklingError("OrderedDict() of a non-container is not allowed")
        _charge(len(items), "OrderedDict")
        if not isinstance(items, dict) and not all(
            isinstance(p, tuple | list) and len(p) == 2 and _hashable_scalar(p[0]) for p in items
        ):
            raise pickle.UnpicklingError("OrderedDict() items must be (key, value) pairs with plain keys")
        return collections.OrderedDict(items)
    return collections.OrderedDict()


def _path(*parts):
    if not all(isinstance(p, str) for p in parts):
        raise pickle.UnpicklingError("a path must be made of strings")
    _charge(sum(len(p) for p in parts), "path")
    return os.path.join(*parts) if parts else "."


# numpy scalars and arrays (found in some training checkpoints and in every .pdparams).


class _NumpyDType(_Marker):
    __slots__ = ()

    def __setstate__(self, state):  # (version, byteorder, ...): only the byte order matters here
        if isinstance(state, tuple) and len(state) > 1 and state[1] in (">", "<", "|", "="):
            dtype = np.dtype(self.dtype).newbyteorder(state[1]) if state[1] in "<>" else np.dtype(self.dtype)
            object.__setattr__(self, "dtype", dtype.str)


def _numpy_dtype(spec, *_ignored):
    if not isinstance(spec, str) or spec.lstrip("<>|=") not in NUMPY_DTYPE_SPECS:
        raise pickle.UnpicklingError(f"numpy dtype {short_repr(spec)} is not a plain numeric dtype")
    return _NumpyDType("numpy.dtype", np.dtype(spec).str)


def _array_from(raw, dt: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    """``raw`` (exactly the bytes ``shape`` needs) as an array; a view unless a byte swap is needed."""
    need = _numel(shape) * dt.itemsize
    if len(raw) != need:
        raise pickle.UnpicklingError(
            f"numpy array data has {len(raw)} bytes, shape {short_repr(shape)} of {dt} needs {need}"
        )
    array = np.frombuffer(raw, dtype=dt).reshape(shape, order=order)
    if dt.isnative or dt.itemsize == 1:
        return array
    _charge(need, "numpy byte swap")
    return array.astype(dt.newbyteorder("="))


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
        self.__dict__["array"] = _array_from(raw, np.dtype(dtype.dtype), shape, "F" if fortran else "C")

    @property
    def shape(self) -> tuple[int, ...]:
        array = self.__dict__.get("array")
        return array.shape if array is not None else ()


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
    return _array_from(buf, np.dtype(dtype.dtype), _ints(shape, "shape"), order)


def _numpy_scalar(dtype, raw=b""):
    if not isinstance(dtype, _NumpyDType) or not isinstance(raw, bytes):
        raise pickle.UnpicklingError("numpy scalar needs a numeric dtype and bytes")
    dt = np.dtype(dtype.dtype)
    if len(raw) != dt.itemsize:
        raise pickle.UnpicklingError(f"numpy scalar of {dt} needs {dt.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dt, count=1)[0]


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Size"): _size,
        ("torch", "device"): _device,
        ("_codecs", "encode"): _codecs_encode,
        ("builtins", "set"): _set_of(set),
        ("builtins", "frozenset"): _set_of(frozenset),
        ("builtins", "complex"): _complex,
        ("builtins", "bytearray"): _bytearray,
        # protocol <= 2 pickles name builtins "__builtin__" (Python 2 names, pickle's fix_imports)
        ("__builtin__", "set"): _set_of(set),
        ("__builtin__", "frozenset"): _set_of(frozenset),
        ("__builtin__", "complex"): _complex,
        ("__builtin__", "bytearray"): _bytearray,
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
    objects obtained through ``find_class``, so nothing outside this module ever runs. Use it through
    :func:`safe_loads`, which scans the opcodes first and bounds the work.
    """

    def __init__(self, file: BinaryIO, persistent_load=None):
        super().__init__(file, encoding="latin1")
        self._persistent = persistent_load

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeCheckpointError(clip(f"{module}.{name}", 120)) from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        _charge(_length(pid), "persistent id")
        return self._persistent(pid)


def _refused(path: Path, exc: UnsafeCheckpointError) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path}: refused: the pickle names {exc.args[0]}, which a weights file never needs "
        "(not on the allow-list); nothing from the file was run. A file holding a whole pickled model must be "
        "re-saved as its state_dict"
    )


# ---------------------------------------------------------------------------------------------------------------
# 3. The unpickled graph


_CONTAINERS = (dict, list, tuple, set, frozenset, PickledObject)


def _children(obj) -> list:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, PickledObject):
        return [v for k, v in obj.__dict__.items() if k != "array"]
    return list(obj)


def check_graph(root: Any, limit: int) -> None:
    """Refuse a cyclic graph, one nested deeper than MAX_DEPTH, or one whose tree expansion exceeds ``limit``.

    Code that walks an unpickled object recursively (``materialize``, a training checkpoint's ``plain``) is then
    safe: no cycle, no RecursionError, and its work is bounded by ``limit`` nodes. Iterative, O(objects + edges).
    """
    if not isinstance(root, _CONTAINERS):
        return
    done: dict[int, tuple[int, int]] = {}
    active: set[int] = set()
    todo: list[tuple[Any, bool]] = [(root, False)]
    while todo:
        obj, expanded = todo.pop()
        oid = id(obj)
        if not expanded:
            if oid in done:
                continue
            if oid in active:
                raise PickleBoundsError("its objects form a cycle (a container holds itself)")
            active.add(oid)
            todo.append((obj, True))
            todo.extend(
                (c, False) for c in _children(obj) if isinstance(c, _CONTAINERS) and id(c) not in done
            )
            continue
        size, depth = 1, 0
        for child in _children(obj):
            if isinstance(child, _CONTAINERS):
                s, d = done[id(child)]
                size, depth = size + s, max(depth, d)
            else:
                size += 1
        active.discard(oid)
        if depth + 1 > MAX_DEPTH:
            raise PickleBoundsError(f"containers nested more than {MAX_DEPTH} deep")
        if size > limit:
            raise PickleBoundsError(
                f"its shared references expand to more than {limit} objects, out of proportion with its size"
            )
        done[oid] = (size, depth + 1)


def _stream_end(file: BinaryIO) -> int:
    if isinstance(file, io.BytesIO):
        return file.getbuffer().nbytes
    try:
        return os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        here = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(here)
        return end


def safe_loads(data: bytes | BinaryIO, path: Path | str = "<bytes>", persistent_load=None) -> Any:
    """Unpickle with the allow-list (``.pdparams``, ``.pdckpt`` and the pickles inside ``.pth`` files).

    ``data`` is the pickle's bytes or a seekable binary file positioned at it (left just after its STOP).
    """
    file = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    token = None
    try:
        length = scan_pickle(file, _stream_end(file))
        limit = BUDGET_FACTOR * length + BUDGET_SLACK
        token = _BUDGET.set(_Budget(limit))
        obj = SafeUnpickler(file, persistent_load).load()
        check_graph(obj, limit)
        return obj
    except UnsafeCheckpointError as exc:
        raise _refused(Path(path), exc) from None
    except CheckpointFormatError:
        raise
    except PickleBoundsError as exc:
        raise CheckpointFormatError(f"{path}: refused a crafted or corrupt pickle: {clip(exc)}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        OverflowError,
        struct.error,
        RecursionError,
    ) as exc:
        raise CheckpointFormatError(
            f"{path}: not a readable pickle ({type(exc).__name__}: {clip(exc)})"
        ) from None
    except MemoryError:
        raise CheckpointFormatError(f"{path}: corrupt pickle (asks for an impossible allocation)") from None
    finally:
        if token is not None:
            _BUDGET.reset(token)
