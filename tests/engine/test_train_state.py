"""Run-folder records and EMA: optimiser state by structured names, checkpoint round trip, metrics files."""

from __future__ import annotations

import csv
import json

import numpy as np
import paddle
import pytest

from shunted.engine.train_ema import ModelEMA
from shunted.engine.train_state import (
    load_checkpoint,
    load_optimizer_state,
    optimizer_state,
    plot_metrics,
    save_checkpoint,
    write_metrics,
)
from shunted.errors import CheckpointFormatError


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
