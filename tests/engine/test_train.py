"""End-to-end training on small real data (CIFAR-10 JPEGs from ../shared, 32 px, CPU).

Fine-tuning the bundled demo checkpoint, resume after an interrupt and after SIGKILL (bit-identical to an
uninterrupted run), a non-finite loss stopping the run, and a 2-process run through paddle.distributed.launch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rank_spy import spy_launch, written_by_rank0

from shunted.cli import main
from shunted.convert import read_weights
from shunted.engine import train as train_engine
from shunted.engine.train.state import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track:UserWarning")

TINY = ["--img-size", "32", "--workers", "0", "--batch-size", "8", "-o", "Optimizer.lr.warmup_epoch=1"]


def label_list(root: Path, per_class: int, out: Path, num_classes: int = 10) -> Path:
    """A 'relative/path label' file with the first ``per_class`` images of the first ``num_classes`` classes."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())[:num_classes]
    lines = [
        f"{c}/{f.name} {i}" for i, c in enumerate(classes) for f in sorted((root / c).iterdir())[:per_class]
    ]
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def cifar(shared_dir) -> Path:
    return shared_dir / "data" / "cifar10"


def train_argv(cifar: Path, labels: Path, out: Path, *extra: str) -> list[str]:
    data = ["--data", str(cifar / "train-5k"), "--labels", str(labels)]
    return ["train", "--model", "shunted_t", *data, "--output", str(out), *extra]


def weights(path: Path) -> dict[str, np.ndarray]:
    return read_weights(path).state


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not np.array_equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_finetune_demo_checkpoint_on_new_classes(cifar, repo_root, tmp_path):
    demo = repo_root / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
    train = label_list(cifar / "train-5k", 16, tmp_path / "train.txt", num_classes=5)
    val = label_list(cifar / "test", 10, tmp_path / "val.txt", num_classes=5)
    run = tmp_path / "run"
    plain = ["DataLoader.Train.mixup.prob=0", "DataLoader.Train.transform.auto_augment=null"]
    plain += ["DataLoader.Train.transform.re_prob=0", "DataLoader.Train.transform.scale=[0.5,1.0]"]
    argv = train_argv(cifar, train, run, "--pretrained", str(demo), "--num-classes", "5", "--epochs", "4")
    argv += ["--img-size", "32", "--batch-size", "16", "--workers", "0", "--lr", "2e-3", "--freeze", "2"]
    argv += ["--val-data", str(cifar / "test"), "--val-labels", str(val), "-o", "Optimizer.lr.warmup_epoch=0"]
    assert main(argv + [x for o in plain for x in ("-o", o)]) == 0

    rows = load_checkpoint(run / "last.pdckpt")["metrics"]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]  # 20 steps of fine-tuning
    top1 = [r["val_top1"] for r in rows]
    assert max(top1) > 40.0  # 5 classes: chance is 20 %
    assert (run / "metrics.csv").read_text().count("\n") == 5
    start, last = weights(demo), weights(run / "last.pdparams")
    assert last["head.weight"].shape == (512, 5)  # a new head for 5 classes (the demo has 10)
    frozen = [
        k for k in last if k.startswith(("patch_embed1.", "block1.", "norm1.", "patch_embed2.", "block2."))
    ]
    assert all(
        np.array_equal(last[k], start[k]) for k in frozen
    )  # --freeze 2 (incl. the stem's BN statistics)
    assert not np.array_equal(last["block3.0.attn.q.weight"], start["block3.0.attn.q.weight"])
    best_epoch = int(np.argmax(top1)) + 1
    assert load_checkpoint(run / "last.pdckpt")["best_epoch"] == best_epoch
    assert weights(run / "best.pdparams").keys() == last.keys()


@pytest.fixture(scope="module")
def tiny_list(cifar, tmp_path_factory) -> Path:
    return label_list(
        cifar / "train-5k", 3, tmp_path_factory.mktemp("lists") / "tiny.txt"
    )  # 30 images: 3 steps


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_resume_after_interrupt_equals_uninterrupted_run(cifar, tiny_list, tmp_path, monkeypatch):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    tiny = [*TINY, "-o", "EMA.enabled=true", "-o", "EMA.decay=0.5"]
    assert main(train_argv(cifar, tiny_list, full, "--epochs", "2", *tiny)) == 0

    original = train_engine.Trainer.train_epoch

    def interrupt_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(train_engine.Trainer, "train_epoch", interrupt_second_epoch)
    assert main(train_argv(cifar, tiny_list, stopped, "--epochs", "2", *tiny)) == 130
    assert load_checkpoint(stopped / "last.pdckpt")["epoch"] == 1
    monkeypatch.setattr(train_engine.Trainer, "train_epoch", original)
    assert main(train_argv(cifar, tiny_list, stopped, "--epochs", "2", *tiny)) == 2  # refuses to overwrite
    assert main(train_argv(cifar, tiny_list, stopped, "--epochs", "2", "--resume", *tiny)) == 0

    assert_same_weights(full / "last.pdparams", stopped / "last.pdparams")
    assert_same_weights(full / "ema.pdparams", stopped / "ema.pdparams")
    ema, last = weights(full / "ema.pdparams"), weights(full / "last.pdparams")
    assert not np.array_equal(ema["head.weight"], last["head.weight"])  # an average, not a copy
    a, b = load_checkpoint(full / "last.pdckpt"), load_checkpoint(stopped / "last.pdckpt")
    assert [r["lr"] for r in a["metrics"]] == [r["lr"] for r in b["metrics"]]
    assert [r["train_loss"] for r in a["metrics"]] == [r["train_loss"] for r in b["metrics"]]
    moments = [k for k in a["optimizer"] if "moment" in k]
    assert moments and all(np.array_equal(a["optimizer"][k], b["optimizer"][k]) for k in moments)


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_non_finite_loss_stops_and_keeps_the_last_good_epoch(cifar, tiny_list, tmp_path, capsys):
    run = tmp_path / "run"
    # epochs 1 and 2 train at the warm-up start 1e-6 (official stepping); epoch 3 at ~7.5e29 blows up
    assert main(train_argv(cifar, tiny_list, run, "--epochs", "3", "--lr", "1e30", *TINY)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("shunted train: error: loss is ") and "epoch 3" in err and "last.pdckpt" in err
    state = load_checkpoint(run / "last.pdckpt")
    assert state["epoch"] == 2 and len(state["metrics"]) == 2
    assert all(np.isfinite(v).all() for v in weights(run / "last.pdparams").values())


def _cli(argv: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="2", SHUNTED_DEBUG="1")
    return subprocess.Popen([sys.executable, "-m", "shunted", *argv], env=env, text=True, **kw)


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_sigkill_mid_epoch_resumes_from_the_last_complete_epoch(cifar, tmp_path):
    labels = label_list(cifar / "train-5k", 4, tmp_path / "list.txt")  # 40 images: 5 steps, 4 used
    argv = ["--epochs", "2", "--max-steps", "4", *TINY]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert _cli(train_argv(cifar, labels, ref, *argv), stderr=subprocess.DEVNULL).wait(timeout=300) == 0

    proc = _cli(train_argv(cifar, labels, killed, *argv), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "last.pdckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    epoch_seconds = load_checkpoint(killed / "last.pdckpt")["metrics"][0]["seconds"]
    time.sleep(epoch_seconds / 3)
    assert proc.poll() is None, "the run finished before it could be killed mid-epoch 2"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert load_checkpoint(killed / "last.pdckpt")["epoch"] == 1  # epoch 2 was lost, nothing else

    assert _cli(train_argv(cifar, labels, killed, *argv, "--resume")).wait(timeout=300) == 0
    assert_same_weights(ref / "last.pdparams", killed / "last.pdparams")
    assert not [p.name for p in killed.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_two_processes_through_paddle_distributed_launch(cifar, tiny_list, tmp_path):
    """Both ranks finish with identical weights; only rank 0 writes (every atomic write ends in os.replace)."""
    script, env, spy_dir = spy_launch(tmp_path)
    run = tmp_path / "run"
    argv = train_argv(cifar, tiny_list, run, "--epochs", "1", *TINY, "--batch-size", "4")
    argv += ["--val-data", str(cifar / "test"), "--val-labels", str(tiny_list.with_name("val.txt"))]
    label_list(cifar / "test", 2, tiny_list.with_name("val.txt"))
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--log_dir", str(tmp_path / "log")]
    done = subprocess.run([*launch, "--nproc_per_node", "2", *script, *argv], env=env, capture_output=True)
    assert done.returncode == 0, (tmp_path / "log" / "workerlog.0").read_text()[-2000:]

    written = written_by_rank0(spy_dir)
    assert {"last.pdckpt", "last.pdparams", "metrics.json", "summary.json"} <= written
    summary = __import__("json").loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert (
        summary["weights_sha256_per_rank"] == [summary["weights_sha256"][:32]] * 2
    )  # gathered from both ranks
    state = load_checkpoint(run / "last.pdckpt")
    assert state["metrics"][0]["images"] == 24  # 3 steps x 4 images x 2 processes, all-reduced
    assert state["metrics"][0]["val_top1"] is not None


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_loader_workers_do_not_change_the_run(cifar, tiny_list, tmp_path):
    """Augmentation is seeded per (seed, epoch, sample), so worker processes see what the main process would."""
    for workers in ("0", "2"):
        argv = train_argv(cifar, tiny_list, tmp_path / workers, "--epochs", "1", *TINY, "--workers", workers)
        assert main(argv) == 0
    assert_same_weights(tmp_path / "0" / "last.pdparams", tmp_path / "2" / "last.pdparams")
