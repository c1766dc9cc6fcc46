"""A run never writes a non-finite checkpoint, and cleans only its own orphan temporaries (issue 11, items 3, 6).

Small real data: 10 CIFAR-10 JPEGs of each of 2 classes from ../shared, 32 px, shunted_t, one step per epoch.
The update that breaks the weights is injected after a training step (its loss, computed before the update, is
finite), which is what ``--lr`` far too large does on the last step of an epoch.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from shunted.cli import main
from shunted.engine import train as train_engine
from shunted.engine.train.state import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track:UserWarning")

FAST = ["--img-size", "32", "--workers", "0", "--batch-size", "8", "--max-steps", "1"]
FAST += ["-o", "Optimizer.lr.warmup_epoch=0"]


@pytest.fixture(scope="module")
def data(shared_dir, tmp_path_factory) -> Path:
    """10 images of each of 2 CIFAR-10 classes, copied into class folders."""
    root = tmp_path_factory.mktemp("cifar2")
    for cls in ("airplane", "cat"):
        (root / cls).mkdir()
        for f in sorted((shared_dir / "data" / "cifar10" / "train-5k" / cls).iterdir())[:10]:
            shutil.copy(f, root / cls / f.name)
    return root


def argv(data: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "--model", "shunted_t", "--data", str(data), "--output", str(run), *FAST, *extra]


def break_after_step(monkeypatch, epoch: int, what: str) -> None:
    """After the (only) step of epoch ``epoch`` (1-based), put NaN into one tensor of ``what``."""
    original = train_engine.Trainer.train_step
    calls = []

    def step(self, batch, rng):
        loss = original(self, batch, rng)
        calls.append(1)
        if len(calls) == epoch:
            if what == "model":
                tensor = self.model.head.weight
            elif what == "ema":
                tensor = self.ema.state["head.weight"]
            else:  # an AdamW moment of the head's weight
                tensor = self.optimizer._accumulators["moment2"][self.model.head.weight.name]
            tensor.set_value(paddle.full(tensor.shape, float("nan"), tensor.dtype))
        return loss

    monkeypatch.setattr(train_engine.Trainer, "train_step", step)


def all_finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, np.ndarray) and np.issubdtype(obj.dtype, np.inexact):
        return bool(np.isfinite(obj).all())
    return True


def pdparams(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh:  # our own file, written by this test's run
        return pickle.load(fh)


def last_error_line(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error" in line]


@pytest.mark.parametrize(
    ("what", "name"),
    [
        ("model", "model.head.weight"),
        ("ema", "ema.head.weight"),
        ("moment", "optimizer.head.weight_moment2_0"),
    ],
)
def test_a_step_that_breaks_the_weights_writes_no_checkpoint(data, tmp_path, monkeypatch, capsys, what, name):
    """One epoch of one step whose update is NaN (weights, EMA or an AdamW moment): exit 2, one line, no file."""
    run = tmp_path / "run"
    break_after_step(monkeypatch, 1, what)
    assert main(argv(data, run, "--epochs", "1", "-o", "EMA.enabled=true")) == 2
    errors = last_error_line(capsys)
    assert len(errors) == 1, errors
    assert errors[0].startswith("shunted train: error: weights not finite after epoch 1 (")
    assert name in errors[0] and "no checkpoint was written" in errors[0]
    written = sorted(p.name for p in run.iterdir())
    assert not [n for n in written if n.endswith((".pdparams", ".pdckpt"))], written


def test_a_later_bad_epoch_keeps_the_last_good_one(data, tmp_path, monkeypatch, capsys):
    """Epoch 1 is saved; epoch 2's update is NaN: nothing of epoch 2 is written.

    The error names the epoch that is kept, and that checkpoint and every weights file beside it are finite.
    """
    run = tmp_path / "run"
    break_after_step(monkeypatch, 2, "model")
    assert main(argv(data, run, "--epochs", "3", "-o", "EMA.enabled=true", "-o", "EMA.decay=0.5")) == 2
    errors = last_error_line(capsys)
    assert len(errors) == 1 and errors[0].startswith("shunted train: error: weights not finite after epoch 2")
    assert f"{run / 'last.pdckpt'} keeps epoch 1, the last good one" in errors[0]
    state = load_checkpoint(run / "last.pdckpt")
    assert state["epoch"] == 1 and [r["epoch"] for r in state["metrics"]] == [1]
    assert all_finite(state["model"]) and all_finite(state["ema"]) and all_finite(state["optimizer"])
    last, ema = pdparams(run / "last.pdparams"), pdparams(run / "ema.pdparams")
    assert all_finite(last) and all_finite(ema)
    assert all(np.array_equal(last[k], v) for k, v in state["model"].items())  # the kept epoch's weights
    assert not (run / "best.pdparams").exists()  # no validation set: no best


def test_orphan_temporaries_are_removed_at_start_and_nothing_else(data, tmp_path):
    """Temporaries named as shunted/fileio.py's atomic_path names them for the run's outputs go; the rest stays."""
    run = tmp_path / "run"
    run.mkdir()
    orphans = [".last.pdckpt.k3x_9q2a.tmp", ".last.pdparams.abcdefgh.tmp", ".metrics.json.0a1b2c3d.tmp"]
    kept = {
        "notes.txt": b"mine",
        ".notes.txt.abcdefgh.tmp": b"a temporary of another program",
        ".last.pdckpt.tmp": b"no random part",
        ".last.pdckpt.abcdefghi.tmp": b"9 random characters",
        "last.pdckpt.abcdefgh.tmp": b"no leading dot",
        ".last.pdckpt.ABCDEFGH.tmp": b"upper case: not tempfile's alphabet",
        ".last.pdckpt.abcdefgh.tmp.bak": b"another suffix",
    }

    def plant() -> None:
        for name in orphans:
            (run / name).write_bytes(b"partial")
        for name, content in kept.items():
            (run / name).write_bytes(content)

    plant()
    (run / "sub").mkdir()
    (run / "sub" / ".last.pdckpt.abcdefgh.tmp").write_bytes(b"in a sub-folder: not ours")
    assert main(argv(data, run, "--epochs", "1")) == 0
    names = {p.name for p in run.iterdir()}
    assert not names & set(orphans)
    assert all((run / n).read_bytes() == c for n, c in kept.items())
    assert (run / "sub" / ".last.pdckpt.abcdefgh.tmp").exists()

    plant()  # a refused start (a run is there, no --resume) touches nothing
    assert main(argv(data, run, "--epochs", "1")) == 2
    assert all((run / n).exists() for n in orphans)
    # a resumed run cleans too: test_sigkill_during_a_checkpoint_write_leaves_no_orphan_after_the_next_run


KILL_IN_CHECKPOINT_WRITE = """
import os, signal, sys
real_replace = os.replace
writes = []
def replace(src, dst, *a, **kw):  # SIGKILL when epoch 2's last.pdckpt is complete but not yet renamed
    if str(dst).endswith("last.pdckpt"):
        writes.append(dst)
        if len(writes) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *a, **kw)
os.replace = replace
from shunted.cli import main
sys.exit(main())
"""


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_leaves_no_orphan_after_the_next_run(data, tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_IN_CHECKPOINT_WRITE)
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    cmd = [sys.executable, str(script), *argv(data, run, "--epochs", "2")]
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL
    orphans = [p.name for p in run.iterdir() if p.name.startswith(".last.pdckpt.")]
    assert len(orphans) == 1 and load_checkpoint(run / "last.pdckpt")["epoch"] == 1

    resume = [sys.executable, "-m", "shunted", *argv(data, run, "--epochs", "2", "--resume")]
    assert subprocess.run(resume, env=env, capture_output=True, timeout=300).returncode == 0
    assert load_checkpoint(run / "last.pdckpt")["epoch"] == 2
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
