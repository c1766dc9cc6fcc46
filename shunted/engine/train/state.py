"""What a training run leaves in its folder, written atomically (``shunted.fileio``).

- ``last.pdckpt``: the full state after the last complete epoch — model, optimiser (AdamW moments + LR
  scheduler position) keyed by *structured* parameter names (Paddle's own keys are creation-order names such as
  ``linear_3.w_0`` that change with the process), EMA, epoch, best top-1, Python/NumPy RNG states, config and the
  metrics so far. A pickle of plain containers and numpy arrays, read back through the converter's allow-list
  unpickler (nothing in it can run code). Paddle's generator is not stored: the trainer re-seeds it from
  (seed, epoch, rank) at the start of every epoch, so its state at an epoch boundary follows from those.
- ``last.pdparams`` / ``best.pdparams`` (/ ``ema.pdparams``): weights only, what ``shunted eval`` and
  ``create_model(pretrained=...)`` take.
- ``metrics.csv``, ``metrics.json``: one row per epoch; ``metrics.png`` when matplotlib is importable.
- ``config.yaml``, ``summary.json``: the resolved config; the run's facts after the last epoch.

Nothing non-finite is ever written (``non_finite`` is checked first). A process killed mid-write leaves a
temporary of ``atomic_path``'s; ``orphan_temporaries`` finds exactly those, for removal when a run starts.
"""

from __future__ import annotations

import csv
import io
import pickle
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from ...errors import CheckpointFormatError
from ...fileio import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic

CHECKPOINT = "last.pdckpt"
FORMAT = "shunted-train-state"
VERSION = 1
# every file a run writes into its folder through shunted.fileio (engine/train/loop.py and this module)
OUTPUTS = (
    CHECKPOINT,
    "last.pdparams",
    "best.pdparams",
    "ema.pdparams",
    "metrics.csv",
    "metrics.json",
    "metrics.png",
    "summary.json",
    "config.yaml",
    "label_counts.json",  # shunted seg-train: the labels' values, checked before training
)
# shunted/fileio.py atomic_path: tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp") — 8 random characters
# from tempfile's alphabet (lowercase letters, digits, underscore) between them
_NAMES = "|".join(re.escape(n) for n in OUTPUTS)
_TEMPORARY = re.compile(rf"\.({_NAMES})\.[a-z0-9_]{{8}}\.tmp")


def orphan_temporaries(run_dir: Path) -> list[Path]:
    """Temporaries of this run's own outputs left in ``run_dir`` by a killed process (regular files only).

    Only names ``atomic_path`` makes for the names in ``OUTPUTS`` match; anything else in the folder is the
    user's and is never listed.
    """
    if not run_dir.is_dir():
        return []
    return sorted(
        p for p in run_dir.iterdir() if _TEMPORARY.fullmatch(p.name) and not p.is_symlink() and p.is_file()
    )


def remove_orphan_temporaries(run_dir: Path) -> list[Path]:
    """Delete ``orphan_temporaries(run_dir)``; returns what was removed."""
    removed = orphan_temporaries(run_dir)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def non_finite(arrays: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Names (``prefix`` + key, nested mappings joined by dots) of floating-point arrays holding NaN or ±inf.

    Takes numpy arrays, Paddle tensors and nested mappings of them (a ``Trainer.state``); skips everything else.
    """
    bad = []
    for key, value in arrays.items():
        if isinstance(value, Mapping):
            bad += non_finite(value, f"{prefix}{key}.")
            continue
        if isinstance(value, paddle.Tensor):
            if not paddle.is_floating_point(value):
                continue
            value = value.astype("float32").numpy() if value.dtype == paddle.bfloat16 else value.numpy()
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.inexact):
            if not np.isfinite(value).all():
                bad.append(f"{prefix}{key}")
    return bad


def to_numpy(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.numpy() if isinstance(v, paddle.Tensor) else v) for k, v in state.items()}


def _param_names(model: paddle.nn.Layer) -> dict[str, str]:
    """Paddle's unique name → structured name (``block1.0.attn.q.weight``)."""
    return {p.name: n for n, p in model.named_parameters()}


def _rename_keys(state: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Replace the parameter-name prefix of each optimiser key (``<param>_moment1_0``) by its mapped name."""
    out = {}
    for key, value in state.items():
        cut = [i for i, ch in enumerate(key) if ch == "_" and key[:i] in names]
        out[names[key[: max(cut)]] + key[max(cut) :] if cut else key] = value
    return out


def optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer) -> dict[str, Any]:
    """The optimiser's state dict with structured parameter names and numpy values."""
    state = dict(optimizer.state_dict())
    sched = state.pop("LR_Scheduler", None)
    state.pop("master_weights", None)
    out = to_numpy(_rename_keys(state, _param_names(model)))
    if sched is not None:
        out["LR_Scheduler"] = dict(sched)
    return out


def load_optimizer_state(
    optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer, state: Mapping
) -> None:
    reverse = {n: p for p, n in _param_names(model).items()}
    state = dict(state)
    sched = state.pop("LR_Scheduler", None)
    restored = _rename_keys(state, reverse)
    if sched is not None:
        restored["LR_Scheduler"] = dict(sched)
    optimizer.set_state_dict(restored)


def rng_states() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(_tuples(states["python"]))
    np.random.set_state(states["numpy"])


def _tuples(obj: Any) -> Any:
    return tuple(_tuples(o) for o in obj) if isinstance(obj, list | tuple) else obj


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Pickle (protocol 4) the state — plain containers and numpy arrays — atomically."""
    write_bytes_atomic(path, pickle.dumps({"format": FORMAT, "version": VERSION, **state}, protocol=4))


def load_checkpoint(path: Path) -> dict[str, Any]:
    from ...convert.safe_pickle import NumpyArray, safe_loads

    def plain(obj: Any) -> Any:
        if isinstance(obj, NumpyArray):
            return obj.__dict__["array"]
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(plain(v) for v in obj)
        return obj

    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no checkpoint to resume from (run without --resume first)")
    state = plain(safe_loads(io.BytesIO(path.read_bytes()), path))
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointFormatError(f"{path}: not a shunted training checkpoint")
    return state


def open_run_dir(run_dir: Path, cfg: dict) -> list[Path]:
    """Create the run folder, delete the partial writes an interrupted run left in it (returned, to be logged)
    and write the resolved ``cfg`` as config.yaml (both trainers, on the main process)."""
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_orphan_temporaries(run_dir)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    return removed


def run_state(
    epoch: int, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer, cfg: dict, rows: list[dict]
) -> dict[str, Any]:
    """What every ``last.pdckpt`` holds (``shunted train`` and ``shunted seg-train`` add their own keys): the
    epoch, weights, optimizer moments, RNG states, the config and the metrics rows so far."""
    return {
        "epoch": epoch,
        "model": to_numpy(model.state_dict()),
        "optimizer": optimizer_state(optimizer, model),
        "rng": rng_states(),
        "config": cfg,
        "metrics": rows,
    }


def restore_run_state(
    path: Path, state: Mapping[str, Any], model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer
) -> None:
    """Put ``run_state``'s weights, optimizer moments and RNG states (of checkpoint ``path``) back."""
    from ...models.weights import apply_state_dict

    apply_state_dict(model, state["model"], source=str(path))
    load_optimizer_state(optimizer, model, state["optimizer"])
    set_rng_states(state["rng"])


def save_weights(path: Path, model_state: Mapping[str, Any]) -> None:
    from ...convert import write_pdparams

    with atomic_path(path) as tmp:
        write_pdparams(tmp, to_numpy(model_state))


# metrics.png's second panel: (row key, legend, axis label)
TOP1_CURVE = ("val_top1", "val top-1", "top-1 (%)")


def write_metrics(
    run_dir: Path, rows: list[dict], plot: bool = True, curve: tuple[str, str, str] = TOP1_CURVE
) -> None:
    """metrics.json and metrics.csv (one row per epoch) and, with ``plot``, metrics.png (``plot_metrics``)
    when matplotlib is available. ``shunted train`` and ``shunted seg-train`` (shunted/engine/seg/train.py) write
    theirs with it."""
    write_json_atomic(run_dir / "metrics.json", rows)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(run_dir / "metrics.csv", buf.getvalue())
    if plot:
        plot_metrics(run_dir / "metrics.png", rows, curve)


def plot_metrics(path: Path, rows: list[dict], curve: tuple[str, str, str] = TOP1_CURVE) -> bool:
    """Loss curves (train, and val when the rows have it) and the validation score ``curve`` = (row key,
    legend, axis label) at the epochs that have it; False (nothing written) without matplotlib (the ``plot``
    extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    key, label, ylabel = curve
    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in rows], label="train")
    if any(r.get("val_loss") is not None for r in rows):
        ax1.plot(epochs, [r.get("val_loss") for r in rows], label="val")
    val = [r for r in rows if r.get(key) is not None]
    if val:
        ax2.plot([r["epoch"] for r in val], [r[key] for r in val], marker="o", label=label)
        ax2.legend()
    ax1.set(xlabel="epoch", ylabel="loss")
    ax2.set(xlabel="epoch", ylabel=ylabel)
    ax1.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True
