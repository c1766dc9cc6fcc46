"""The learning rate each epoch trains at, as the official ``main.py`` steps timm's scheduler — in metrics.csv,
through an interrupted and resumed run, and with the per-step option.

The expected rates come from ``reference/official_recipe_torch.py`` (timm's ``CosineLRScheduler`` stepped after
every epoch), never from the package's schedule code.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from shunted.cli import main  # noqa: E402
from shunted.engine import train as train_engine  # noqa: E402
from shunted.engine.train.optim import schedule_t, warmup_cosine_lr  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track:UserWarning")


def official_lrs(peak: float, epochs: int, warmup: int, warmup_lr: float = 1e-6, min_lr: float = 1e-5):
    """The rate of every epoch of ``main.py``: read before the epoch, ``scheduler.step(epoch)`` after it."""
    from reference.official_recipe_torch import CosineLRScheduler

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched = CosineLRScheduler(opt, epochs, min_lr, warmup, warmup_lr)
    out = []
    for epoch in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        sched.step(epoch)
    return out


@pytest.mark.parametrize(("epochs", "warmup"), [(300, 5), (30, 0), (4, 2), (3, 1)])
def test_every_epoch_rate_matches_the_official_stepping(epochs, warmup):
    peak = 1e-3  # 5e-4 x 1024 / 512
    ours = [warmup_cosine_lr(schedule_t(e), peak, epochs, warmup) for e in range(epochs)]
    assert ours == pytest.approx(official_lrs(peak, epochs, warmup), rel=1e-12, abs=1e-18)
    if warmup:
        assert ours[0] == ours[1] == 1e-6  # epochs 0 and 1 at the warm-up start
    else:
        assert ours[0] == ours[1] == pytest.approx(peak)  # the peak, then the cosine from t = 0


def test_per_step_option_is_timm_per_update_and_explicit():
    assert schedule_t(3, 5, 10, by_epoch=True) == 2.0  # the default ignores the step
    assert schedule_t(3, 5, 10, by_epoch=False) == 3.5


@pytest.fixture(scope="module")
def cifar(shared_dir) -> Path:
    return shared_dir / "data" / "cifar10" / "train-5k"


def _labels(cifar: Path, out: Path, n: int = 8) -> Path:
    classes = sorted(p.name for p in cifar.iterdir() if p.is_dir())
    lines = [
        f"{classes[i % 10]}/{sorted((cifar / classes[i % 10]).iterdir())[i // 10].name} {i % 10}"
        for i in range(n)
    ]
    out.write_text("\n".join(lines) + "\n")
    return out


def _argv(cifar: Path, labels: Path, out: Path, *extra: str) -> list[str]:
    argv = [
        "train",
        "--model",
        "shunted_t",
        "--data",
        str(cifar),
        "--labels",
        str(labels),
        "--output",
        str(out),
    ]
    argv += ["--epochs", "3", "--img-size", "32", "--batch-size", "8", "--workers", "0", "--lr", "1e-3"]
    argv += [
        "--num-classes",
        "10",
        "-o",
        "Optimizer.lr.warmup_epoch=1",
        "-o",
        "DataLoader.Train.mixup.prob=0",
    ]
    return argv + list(extra)


def _csv_lrs(run: Path) -> list[float]:
    with (run / "metrics.csv").open() as fh:
        return [float(row["lr"]) for row in csv.DictReader(fh)]


@pytest.mark.slow  # short training runs through the command (20-50 s on 2 busy cores)
def test_resumed_run_writes_the_uninterrupted_runs_rates(cifar, tmp_path, monkeypatch):
    """Stopped after epoch 1 and resumed: metrics.csv holds the official rates, the same as an uninterrupted run
    (the resumed epoch 2 trains at lr(0) — the warm-up start — not lr(1))."""
    labels = _labels(cifar, tmp_path / "labels.txt")
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert main(_argv(cifar, labels, full)) == 0

    original = train_engine.Trainer.train_epoch

    def interrupt(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(train_engine.Trainer, "train_epoch", interrupt)
    assert main(_argv(cifar, labels, stopped)) == 130
    assert len(_csv_lrs(stopped)) == 1
    monkeypatch.setattr(train_engine.Trainer, "train_epoch", original)
    assert main(_argv(cifar, labels, stopped, "--resume")) == 0

    expected = official_lrs(1e-3, 3, 1)
    assert _csv_lrs(full) == pytest.approx(expected, rel=1e-12)
    assert _csv_lrs(stopped) == _csv_lrs(full)
    assert expected[0] == expected[1] == 1e-6 and expected[2] > 1e-4


@pytest.mark.slow  # short training runs through the command (20-50 s on 2 busy cores)
def test_per_step_schedule_updates_before_every_step(cifar, tmp_path, monkeypatch):
    """``Optimizer.lr.by_epoch=false``: step k of epoch e trains at lr(e + k / steps); the row records the first."""
    labels = _labels(cifar, tmp_path / "labels.txt")
    seen: list[float] = []
    original = train_engine.Trainer.train_step

    def record(self, batch, rng):
        seen.append(float(self.optimizer.get_lr()))
        return original(self, batch, rng)

    monkeypatch.setattr(train_engine.Trainer, "train_step", record)
    argv = _argv(cifar, labels, tmp_path / "run", "--batch-size", "4", "-o", "Optimizer.lr.by_epoch=false")
    argv[argv.index("--epochs") + 1] = "2"
    assert main(argv) == 0
    from reference.official_recipe_torch import CosineLRScheduler

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    timm = CosineLRScheduler(opt, 2, 1e-5, 1, 1e-6)  # t in epochs; a per-update scheduler reads t = k / steps
    expected = [timm.get_lr(t)[0] for t in (0, 0.5, 1, 1.5)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert _csv_lrs(tmp_path / "run") == pytest.approx(expected[::2], rel=1e-12)
