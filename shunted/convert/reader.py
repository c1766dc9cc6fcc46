"""Reading checkpoints without PyTorch: official ``.pth``, ``.pdparams`` and ``.safetensors`` into Paddle layout.

``read_weights`` turns any supported file into a Paddle-layout state dict of numpy arrays, recognising the variant
and class count and checking every key and shape strictly (writer.py writes the result in another format).

No format is unpickled with a normal unpickler: ``.pth`` and ``.pdparams`` both go through the allow-list of
:mod:`shunted.convert.torch_pickle`, so a file cannot run code. Floating tensors are returned as float32 (float16,
bfloat16 and float64 are converted) unless ``keep_dtype``; with ``keep_dtype`` float16/float64 stay as they are,
and bfloat16 — which numpy cannot hold — is still widened to float32 (exactly).
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointFormatError, WeightsError
from ..fileio import not_regular, sha256_file
from .detect import Detected, detect
from .mapping import TORCH_TO_PADDLE_BUFFERS, strip_key, torch_item_to_paddle, torch_shape_to_paddle
from .safe_pickle import NumpyArray, TensorRef, safe_loads, short_repr
from .safetensors_io import SafetensorRef, SafetensorsFile
from .torch_pickle import PthFile

__all__ = ["LoadedWeights", "check_readable", "describe_dtypes", "read_state_dict", "read_weights"]

STATE_KEYS = ("model", "state_dict", "model_ema")
PADDLE_SUFFIXES = (".pdparams",)
SAFETENSORS_SUFFIXES = (".safetensors",)
PADDLE_STRUCTURE_KEY = "StructuredToParameterName@@"
TORCH_BUFFER_NAMES = (*TORCH_TO_PADDLE_BUFFERS, "num_batches_tracked")
MAX_KEY = 300  # characters of a state-dict key (real ones are under 100; error messages quote them)


@dataclass
class LoadedWeights:
    """A checkpoint read into memory: Paddle names and layouts, numpy arrays (some may be read-only views)."""

    state: dict[str, np.ndarray]
    variant: str | None
    num_classes: int
    dtype: str  # floating dtype of the file ("float32", "float16", "bfloat16" or "mixed(...)")
    path: Path
    sha256: str
    format: str = ""  # "pth-zip", "pth-legacy", "pdparams", "safetensors"
    key: str | None = None  # entry of the checkpoint dict the weights came from (None: bare state dict)
    size: int = 0


def check_readable(path: Path) -> None:
    """A regular file: devices, pipes and sockets (``/dev/zero``, ``/dev/stdin`` on a terminal) are refused."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a checkpoint file", str(path))
    if not path.is_file():
        raise CheckpointFormatError(not_regular(path, path.stat().st_mode, hint="give a checkpoint file"))


def _is_tensor(value: Any) -> bool:
    return isinstance(value, TensorRef | NumpyArray | np.ndarray | SafetensorRef)


def _entries(root: Mapping) -> str:
    keys = list(root)
    shown = ", ".join(
        short_repr(k, 40) if not isinstance(k, str) else short_repr(k, 40).strip("'") for k in keys[:12]
    )
    return (shown + (f", … ({len(keys) - 12} more)" if len(keys) > 12 else "")) or "none"


def _unwrap(root: Any, key: str | None, source: Path) -> tuple[Mapping[str, Any], str | None]:
    """The state dict inside a checkpoint: ``root[key]``, the first of STATE_KEYS, or ``root`` itself."""
    if not isinstance(root, dict):
        raise CheckpointFormatError(f"{source}: holds a {type(root).__name__}, not a dict of weights")
    if key is not None:
        if key not in root:
            raise CheckpointFormatError(
                f"{source}: has no entry {short_repr(key)} (--key); its entries: {_entries(root)}"
            )
        state, used = root[key], key
    elif root and all(_is_tensor(v) for k, v in root.items() if k != PADDLE_STRUCTURE_KEY):
        state, used = root, None
    else:
        used = next((k for k in STATE_KEYS if isinstance(root.get(k), dict)), None)
        if used is None:
            raise CheckpointFormatError(
                f"{source}: no state dict found (looked for {', '.join(STATE_KEYS)}); its entries: {_entries(root)}"
            )
        state = root[used]
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{source}: entry {used!r} is a {type(state).__name__}, not a state dict")
    state = {k: v for k, v in state.items() if k != PADDLE_STRUCTURE_KEY}
    long = [short_repr(k, 60) for k in state if isinstance(k, str) and len(k) > MAX_KEY]
    if long:
        raise CheckpointFormatError(f"{source}: keys longer than {MAX_KEY} characters: {', '.join(long[:3])}")
    bad = [short_repr(k, 60) for k, v in state.items() if not isinstance(k, str) or not _is_tensor(v)]
    if bad:
        raise CheckpointFormatError(
            f"{source}: entry {short_repr(used or '(top level)')} is not a state dict: {', '.join(bad[:5])} "
            "are not tensors; choose the weights with --key"
        )
    if not state:
        raise CheckpointFormatError(f"{source}: the state dict is empty")
    return state, used


def _is_torch_layout(keys: list[str], default: bool) -> bool:
    last = {k.rpartition(".")[2] for k in keys}
    if last & set(TORCH_BUFFER_NAMES):
        return True
    if last & set(TORCH_TO_PADDLE_BUFFERS.values()):
        return False
    return default


class _Source:
    """An open checkpoint: its root object and a reader of one tensor's values (read only when asked)."""

    def __init__(self, fmt: str, root: Any, pth: PthFile | None = None, st: SafetensorsFile | None = None):
        self.format, self.root, self._pth, self._st = fmt, root, pth, st
        self._arrays: dict[int, np.ndarray] = {}

    def array(self, value: Any) -> np.ndarray:
        if isinstance(value, TensorRef):
            return self._pth.array(value)
        if isinstance(value, SafetensorRef):
            cached = self._arrays.get(id(value))
            if cached is None:
                cached = self._arrays[id(value)] = self._st.array(value)
            return cached
        if isinstance(value, NumpyArray):
            value = value.__dict__.get("array")
            if value is None:
                raise CheckpointFormatError("numpy array without data")
        return value

    def close(self) -> None:
        self._arrays.clear()
        if self._pth is not None:
            self._pth.close()
        if self._st is not None:
            self._st.close()


def _open_source(path: Path) -> _Source:
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        st = SafetensorsFile(path)
        return _Source("safetensors", dict(st.tensors), st=st)
    if suffix in PADDLE_SUFFIXES:
        with open(path, "rb") as fh:
            if not fh.read(1):
                raise CheckpointFormatError(f"{path}: empty file")
            fh.seek(0)
            return _Source("pdparams", safe_loads(fh, path))
    pth = PthFile(path)
    return _Source(f"pth-{pth.format}", pth.root, pth=pth)


def _dtype_name(value: Any) -> str:
    if isinstance(value, TensorRef | SafetensorRef):
        return value.dtype
    if isinstance(value, NumpyArray):
        value = value.__dict__.get("array")
    return np.asarray(value).dtype.name if value is not None else "none"


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, TensorRef | SafetensorRef | NumpyArray):
        return tuple(value.shape)
    return tuple(np.shape(value))


def _stand_in(shape: tuple[int, ...]) -> np.ndarray:
    """A zero-memory float32 array of ``shape``: what key/shape checks see before any data is read."""
    return np.broadcast_to(np.zeros((), dtype=np.float32), shape)


def _is_floating(dtype: str) -> bool:
    return dtype == "bfloat16" or (dtype in np.sctypeDict and np.dtype(dtype).kind == "f")


def describe_dtypes(names: set[str]) -> str:
    if len(names) == 1:
        return next(iter(names))
    return f"mixed({','.join(sorted(names))})" if names else "none"


def _state_dict_of(source, key: str | None, path: Path) -> tuple[dict, str | None, bool]:
    """(the state dict ``key`` of an opened file, the key used, whether it is in PyTorch's layout); keys that
    clash once their ``module.`` prefixes are stripped are an error."""
    state, used_key = _unwrap(source.root, key, path)
    keys = [strip_key(k) for k in state]
    if len(set(keys)) != len(keys):
        raise CheckpointFormatError(f"{path}: keys clash once the 'module.' prefixes are removed")
    return state, used_key, _is_torch_layout(keys, default=source.format.startswith("pth"))


def _refuse_not_float(path: Path, not_float: list[str]) -> None:
    if not_float:
        raise WeightsError(
            f"{path}: tensors that should be floating point are not: {', '.join(not_float[:8])}"
            + (f", … ({len(not_float) - 8} more)" if len(not_float) > 8 else "")
        )


def read_weights(path: str | os.PathLike, key: str | None = None, keep_dtype: bool = False) -> LoadedWeights:
    """Read an official ``.pth`` (zip or legacy), a ``.pdparams`` or a ``.safetensors`` file, strictly.

    key: the checkpoint entry holding the weights (default ``model``, ``state_dict``, then ``model_ema``, or a
        bare state dict). ``module.`` prefixes are stripped. The variant and class count are detected from the
        keys and shapes, and every key, shape and dtype is checked against that variant (WeightsError naming
        them) before any tensor data is read (``.pth`` and ``.safetensors``; a ``.pdparams`` holds its data
        inline in the pickle). Only the tensors of the chosen state dict are ever read.
    """
    path = Path(path)
    check_readable(path)
    size = path.stat().st_size
    sha256 = sha256_file(path)
    source = _open_source(path)
    try:
        state, used_key, torch_layout = _state_dict_of(source, key, path)
        # 1. names, shapes and dtypes only
        plan: dict[str, tuple[str, Any]] = {}
        shapes: dict[str, np.ndarray] = {}
        dtypes: dict[str, str] = {}
        for original, value in state.items():
            name, shape = strip_key(original), _shape(value)
            if torch_layout:
                item = torch_shape_to_paddle(name, shape)
                if item is None:
                    continue
                name, shape = item
            plan[name] = (strip_key(original), value)
            shapes[name] = _stand_in(shape)
            dtypes[name] = _dtype_name(value)
        found = detect(shapes, str(path))
        _check_strict(shapes, found, path)
        not_float = [f"{k} ({dtypes[k]})" for k in plan if not _is_floating(dtypes[k])]
        _refuse_not_float(path, not_float)
        # 2. the data of the keys that passed
        out: dict[str, np.ndarray] = {}
        source_dtypes = set(dtypes.values())
        for name, (original, value) in plan.items():
            array = source.array(value)
            if not keep_dtype:
                array = array.astype(np.float32, copy=False)
            if torch_layout:
                _, array = torch_item_to_paddle(original, array)
            out[name] = array
    finally:
        source.close()
    _check_strict(out, found, path)  # again with the values: non-finite tensors
    return LoadedWeights(
        state=out,
        variant=found.variant,
        num_classes=found.num_classes,
        dtype=describe_dtypes(source_dtypes),
        path=path,
        sha256=sha256,
        format=source.format,
        key=used_key,
        size=size,
    )


def read_state_dict(path: str | os.PathLike, key: str | None = None) -> LoadedWeights:
    """Any state dict from a supported file, as float32 Paddle-layout arrays, without the classifier checks.

    For models other than the classifier (the segmentation model, ``shunted/models/fpn.py``): the caller checks
    the keys against its model (``models.weights.apply_state_dict``). ``variant`` is None and ``num_classes`` 0.
    """
    path = Path(path)
    check_readable(path)
    size = path.stat().st_size
    sha256 = sha256_file(path)
    source = _open_source(path)
    try:
        state, used_key, torch_layout = _state_dict_of(source, key, path)
        dtypes = {strip_key(k): _dtype_name(v) for k, v in state.items()}
        not_float = [
            f"{k} ({d})"
            for k, d in dtypes.items()
            if not _is_floating(d) and not (torch_layout and k.endswith(".num_batches_tracked"))
        ]
        _refuse_not_float(path, not_float)
        out: dict[str, np.ndarray] = {}
        for original, value in state.items():
            name, array = strip_key(original), source.array(value).astype(np.float32, copy=False)
            if torch_layout:
                item = torch_item_to_paddle(name, array)
                if item is None:
                    continue
                name, array = item
            out[name] = array
    finally:
        source.close()
    return LoadedWeights(
        state=out,
        variant=None,
        num_classes=0,
        dtype=describe_dtypes(set(dtypes.values())),
        path=path,
        sha256=sha256,
        format=source.format,
        key=used_key,
        size=size,
    )


@functools.lru_cache(maxsize=8)
def _expected_model(variant: str, num_classes: int):
    """The variant's model with lazily created (unallocated) parameters: only names and shapes are needed."""
    import paddle

    from ..models.registry import get_variant
    from ..models.shunted import ShuntedTransformer

    v = get_variant(variant)
    with paddle.LazyGuard():
        return ShuntedTransformer(v.depths, v.num_conv, num_classes=num_classes)


def _check_strict(state: Mapping[str, np.ndarray], found: Detected, path: Path) -> None:
    from ..models.weights import check_state_dict

    model = _expected_model(found.variant, found.num_classes)
    check_state_dict(model, state, source=f"{path} ({found.variant}, {found.num_classes} classes)")
