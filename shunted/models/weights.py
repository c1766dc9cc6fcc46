"""Strict loading of a Paddle-layout state dict (numpy arrays) into a model, and the digest of a model's weights."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import paddle

from ..errors import WeightsError


def _listing(title: str, items: Iterable[str], limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(items[:limit]) + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
    return f"{title} ({len(items)}): {shown}"


def check_state_dict(
    model: paddle.nn.Layer,
    state: Mapping[str, np.ndarray],
    source: str = "checkpoint",
    ignore: Iterable[str] = (),
) -> None:
    """Raise WeightsError naming every missing, unexpected and mis-shaped key, and non-finite tensors."""
    ignore = set(ignore)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in ignore}
    given = {k: tuple(np.shape(v)) for k, v in state.items() if k not in ignore}
    problems = []
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [
        f"{k} {given[k]} vs model {expected[k]}"
        for k in sorted(set(expected) & set(given))
        if given[k] != expected[k]
    ]
    if missing:
        problems.append(_listing("missing keys", missing))
    if unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if mismatched:
        problems.append(_listing("shape mismatches", mismatched))
    nonfinite = sorted(
        k
        for k, v in state.items()
        if k not in ignore and np.issubdtype(np.asarray(v).dtype, np.floating) and not np.isfinite(v).all()
    )
    if nonfinite:
        problems.append(_listing("non-finite values in", nonfinite))
    if problems:
        raise WeightsError(f"{source}: does not fit {type(model).__name__}: " + "; ".join(problems))


def apply_state_dict(
    model: paddle.nn.Layer,
    state: Mapping[str, np.ndarray],
    source: str = "checkpoint",
    ignore: Iterable[str] = (),
) -> None:
    """Check ``state`` strictly, then copy it into ``model`` (cast to each parameter's dtype).

    Keys in ``ignore`` are neither required nor loaded (used to keep a freshly initialised head).
    """
    ignore = set(ignore)
    check_state_dict(model, state, source, ignore)
    targets = model.state_dict()
    for key, value in state.items():
        if key in ignore:
            continue
        target = targets[key]
        target.set_value(np.asarray(value).astype(paddle_dtype_to_numpy(target.dtype), copy=False))


def paddle_dtype_to_numpy(dtype) -> np.dtype:
    return np.dtype(str(dtype).replace("paddle.", ""))


def state_dict_numpy(model: paddle.nn.Layer) -> dict[str, np.ndarray]:
    """The model's state dict as numpy arrays (Paddle layout)."""
    return {k: v.numpy() for k, v in model.state_dict().items()}


def weights_digest(model: paddle.nn.Layer) -> str:
    """SHA-256 of a model's weights as they are (every state-dict entry's name and bytes, in name order): the
    training loop's check that processes agree and its records, and the start-up cache's key of an export."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(value.numpy()).tobytes())
    return h.hexdigest()
