"""Run-folder records and EMA: optimiser state by structured names, checkpoint round trip, metrics files."""

from __future__ import annotations

import csv
import json

import numpy as np
import paddle
import pytest

from shunted.engine.train.ema import ModelEMA
from shunted.engine.train.state import (
    OUTPUTS,
    load_checkpoint,
    load_optimizer_state,
    non_finite,
    optimizer_state,
    orphan_temporaries,
    plot_metrics,
    remove_orphan_temporaries,
    save_checkpoint,
    write_metrics,
)
from shunted.errors import CheckpointFormatError
from shunted.fileio import atomic_path


def _stepped(seed: int):
    paddle.seed(seed)
    model = paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.LayerNorm(4))
    opt = paddle.optimizer.AdamW(learning_rate=0.1, parameters=model.parameters())
    model(paddle.ones([2, 3])).sum().backward()
    opt.step()
    opt.clear_grad()
    return model, opt


def test_optimizer_state_survives_new_parameter_names(tmp_path):
    model, opt = _stepped(0)
    state = optimizer_state(opt, model)
    assert "0.weight_moment1_0" in state and not any(k.startswith("linear_") for k in state)
    save_checkpoint(tmp_path / "s.pdckpt", {"optimizer": state, "rng": None})
    loaded = load_checkpoint(tmp_path / "s.pdckpt")["optimizer"]
    paddle.nn.Linear(1, 1)  # shifts Paddle's name counter: the new model's parameters get other names
    model2, opt2 = _stepped(1)  # other weights, so other moments until the state is loaded
    assert [p.name for p in model2.parameters()] != [p.name for p in model.parameters()]
    assert not np.array_equal(
        optimizer_state(opt2, model2)["0.weight_moment1_0"], state["0.weight_moment1_0"]
    )
    load_optimizer_state(opt2, model2, loaded)
    restored = optimizer_state(opt2, model2)
    assert restored.keys() == state.keys()
    for name in state:
        if name != "LR_Scheduler":
            np.testing.assert_array_equal(restored[name], state[name])


def test_checkpoint_rejects_other_files(tmp_path):
    with pytest.raises(CheckpointFormatError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pdckpt")
    (tmp_path / "x.pdckpt").write_bytes(__import__("pickle").dumps({"a": 1}))
    with pytest.raises(CheckpointFormatError, match="not a shunted training checkpoint"):
        load_checkpoint(tmp_path / "x.pdckpt")


def test_metrics_files(tmp_path):
    rows = [
        {"epoch": 1, "train_loss": 2.0, "val_top1": 10.0},
        {"epoch": 2, "train_loss": 1.5, "val_top1": 30.0},
    ]
    write_metrics(tmp_path, rows)
    assert json.loads((tmp_path / "metrics.json").read_text()) == rows
    with open(tmp_path / "metrics.csv") as fh:
        assert [float(r["train_loss"]) for r in csv.DictReader(fh)] == [2.0, 1.5]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert plot_metrics(tmp_path / "m.png", rows) is False and not (tmp_path / "m.png").exists()
    else:
        assert plot_metrics(tmp_path / "m.png", rows) and (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_ema_update():
    model = paddle.nn.BatchNorm1D(2)
    ema = ModelEMA(model, decay=0.9)
    with paddle.no_grad():
        model.weight.set_value(paddle.to_tensor([3.0, 5.0]))
    ema.update(model)
    np.testing.assert_allclose(ema.state["weight"].numpy(), [0.9 + 0.3, 0.9 + 0.5], rtol=1e-6)
    ema.load({"weight": np.array([7.0, 7.0], np.float32)})
    np.testing.assert_array_equal(ema.state["weight"].numpy(), [7.0, 7.0])


def test_orphan_temporaries_are_exactly_what_atomic_path_leaves(tmp_path):
    """For every output of a run, the temporary atomic_path writes (and a SIGKILL would leave) is recognised."""
    user = ["notes.txt", ".notes.txt.abcdefgh.tmp", ".last.pdckpt.tmp", "last.pdckpt.abcdefgh.tmp"]
    for name in user:
        (tmp_path / name).write_text("user's")
    (tmp_path / ".last.pdparams.abcdefgh.tmp").mkdir()  # a folder is never ours
    (tmp_path / ".summary.json.abcdefgh.tmp").symlink_to(tmp_path / "notes.txt")  # nor a link
    for _ in range(8):  # mkstemp's random part varies: letters, digits and "_"
        for name in OUTPUTS:
            with atomic_path(tmp_path / name) as tmp:
                tmp.write_text("partial")
                assert orphan_temporaries(tmp_path) == [tmp]
    assert {p.name for p in tmp_path.iterdir()} >= set(user)
    planted = [tmp_path / f".{name}.k3x_9q2a.tmp" for name in OUTPUTS]
    for path in planted:
        path.write_text("partial")
    assert remove_orphan_temporaries(tmp_path) == sorted(planted)
    assert not any(p.exists() for p in planted)
    assert all((tmp_path / name).read_text() == "user's" for name in user)
    assert (tmp_path / ".last.pdparams.abcdefgh.tmp").is_dir()
    assert (tmp_path / ".summary.json.abcdefgh.tmp").is_symlink()
    assert orphan_temporaries(tmp_path / "missing") == []


def test_non_finite_names_every_bad_array():
    state = {
        "model": {"a": np.ones(3, np.float32), "b": np.array([1.0, np.nan], np.float32)},
        "ema": {"a": paddle.to_tensor([np.inf], dtype="float32"), "n": paddle.to_tensor([1], dtype="int64")},
        "optimizer": {"a_moment2_0": np.array([-np.inf]), "LR_Scheduler": {"last_lr": float("nan")}},
        "epoch": 3,
        "rng": {"numpy": ("MT19937", np.arange(3, dtype=np.uint32))},
    }
    assert non_finite(state) == ["model.b", "ema.a", "optimizer.a_moment2_0"]
    assert non_finite({"w": paddle.to_tensor([1.0], dtype="bfloat16") * float("inf")}) == ["w"]
