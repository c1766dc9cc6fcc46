"""The two rules that map an official PyTorch state dict onto the Paddle model, and back.

1. Linear weights are [out, in] in PyTorch and [in, out] in Paddle: every 2-D ``*.weight`` is transposed
   (conv weights are 4-D and LayerNorm/BatchNorm weights 1-D, so the rank alone identifies a Linear).
2. BatchNorm buffers ``running_mean`` / ``running_var`` are called ``_mean`` / ``_variance`` in Paddle;
   ``num_batches_tracked`` has no Paddle counterpart and is dropped (written back as 0 in the other direction).

``module.`` prefixes from data-parallel wrappers are stripped on the way in.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TORCH_TO_PADDLE_BUFFERS = {"running_mean": "_mean", "running_var": "_variance"}
PADDLE_TO_TORCH_BUFFERS = {v: k for k, v in TORCH_TO_PADDLE_BUFFERS.items()}
DROPPED_TORCH_BUFFER = "num_batches_tracked"
DATA_PARALLEL_PREFIX = "module."


def strip_key(key: str, prefix: str = DATA_PARALLEL_PREFIX) -> str:
    """``key`` without ``prefix`` (repeatedly, e.g. ``module.module.``)."""
    while key.startswith(prefix):
        key = key[len(prefix) :]
    return key


def strip_prefix(
    state: Mapping[str, np.ndarray], prefix: str = DATA_PARALLEL_PREFIX
) -> dict[str, np.ndarray]:
    """Remove ``prefix`` from every key that carries it."""
    return {strip_key(key, prefix): value for key, value in state.items()}


def _rename_last(key: str, table: Mapping[str, str]) -> str:
    head, _, last = key.rpartition(".")
    return f"{head}.{table[last]}" if last in table else key


def is_linear_weight(key: str, value: np.ndarray) -> bool:
    return key.endswith(".weight") and value.ndim == 2


def torch_shape_to_paddle(key: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]] | None:
    """What :func:`torch_item_to_paddle` makes of ``key`` and a tensor of ``shape``, without any data."""
    if key.rpartition(".")[2] == DROPPED_TORCH_BUFFER:
        return None
    if key.endswith(".weight") and len(shape) == 2:
        shape = shape[::-1]
    return _rename_last(key, TORCH_TO_PADDLE_BUFFERS), tuple(shape)


def torch_item_to_paddle(key: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    """One official entry → its Paddle name and layout (None for ``num_batches_tracked``); prefixes stay."""
    if key.rpartition(".")[2] == DROPPED_TORCH_BUFFER:
        return None
    if is_linear_weight(key, value):
        value = np.ascontiguousarray(value.T)
    return _rename_last(key, TORCH_TO_PADDLE_BUFFERS), value


def torch_to_paddle(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Official (PyTorch) names and layouts → this package's Paddle names and layouts."""
    out = {}
    for key, value in strip_prefix(state).items():
        item = torch_item_to_paddle(key, value)
        if item is not None:
            out[item[0]] = item[1]
    return out


def paddle_to_torch(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Paddle names and layouts → the official PyTorch ones (BatchNorms get ``num_batches_tracked`` = 0)."""
    out = {}
    for key, value in state.items():
        if is_linear_weight(key, value):
            value = np.ascontiguousarray(value.T)
        head, _, last = key.rpartition(".")
        out[_rename_last(key, PADDLE_TO_TORCH_BUFFERS)] = value
        if last == "_variance":
            out[f"{head}.{DROPPED_TORCH_BUFFER}"] = np.zeros((), dtype=np.int64)
    return out
