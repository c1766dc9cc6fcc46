"""The one training loop (shunted/engine/train/loop.py) with a toy third task: batches of variable-length box lists
(a collate function of the task's own), an iteration schedule with a warm-up, a metric called ``val_score``.
Nothing in the loop changes for it. Also: resume refuses another task's checkpoint, ``--resume --epochs N`` with
N <= epochs done, and the order of the end-of-epoch writes (a failed checkpoint write leaves no summary that
claims the epoch). Tiny linear model, no data files: fast."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import paddle
import pytest

from shunted.engine.train import loop as train_loop
from shunted.engine.train import state as ts
from shunted.engine.train.optim import build_optimizer
from shunted.engine.train.task import Task, capped_steps
from shunted.errors import ShuntedError


def _collate(samples):
    """Images stacked; boxes stay a list of arrays of different lengths (as detection's)."""
    return paddle.to_tensor(np.stack([s[0] for s in samples])), [s[1] for s in samples]


class BoxTask(Task):
    name = "boxes"
    best = ("val_score", "best_score")
    curve = ("val_score", "val score", "score")

    def __init__(self, cfg, world, settings):
        super().__init__(cfg, world, settings)
        rng = np.random.default_rng(0)
        self.samples = [
            (rng.normal(size=4).astype("float32"), rng.normal(size=(i % 3 + 1, 4)).astype("float32"))
            for i in range(12)
        ]
        self.model = paddle.nn.Linear(4, 4)
        self.steps_per_epoch = capped_steps(3, settings.max_steps)
        self.scheduler = paddle.optimizer.lr.LinearWarmup(0.1, warmup_steps=4, start_lr=0.0, end_lr=0.1)
        self.optimizer = build_optimizer(self.model, self.scheduler, grad_clip=35.0)
        self.peak_lr = 0.1
        self.lrs: list[float] = []

    def set_epoch(self, epoch):
        order = np.random.default_rng([self.settings.seed, epoch]).permutation(len(self.samples))
        self.loader = [_collate([self.samples[i] for i in order[k : k + 4]]) for k in range(0, 12, 4)]

    def set_lr(self, epoch, step, steps_per_epoch):
        self.scheduler.step(epoch * steps_per_epoch + step)
        self.lrs.append(self.optimizer.get_lr())

    def loss(self, net, batch, rng):
        x, boxes = batch
        target = paddle.to_tensor(np.stack([b.mean(axis=0) for b in boxes]))
        return ((net(x) - target) ** 2).mean()

    def validate(self):
        x, boxes = _collate(self.samples)
        target = paddle.to_tensor(np.stack([b.mean(axis=0) for b in boxes]))
        return {"val_score": -float(((self.model(x) - target) ** 2).mean())}


def cfg(out: Path, epochs: int = 3, resume: bool = False) -> dict:
    return {"Global": {"output_dir": str(out), "seed": 0, "epochs": epochs, "resume": resume}}


def test_a_third_task_trains_and_resumes_bit_identically(tmp_path, monkeypatch):
    full = train_loop.Trainer(cfg(tmp_path / "full"), task=BoxTask)
    result = full.fit()
    assert [r["epoch"] for r in result["rows"]] == [1, 2, 3] and all("val_score" in r for r in result["rows"])
    assert full.task.lrs[:5] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])  # the task's own schedule
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["task"] == "boxes" and summary["epochs_done"] == 3 and "best_score" in summary

    original = train_loop.Trainer.train_epoch

    def interrupt(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(train_loop.Trainer, "train_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_loop.Trainer(cfg(tmp_path / "part"), task=BoxTask).fit()
    monkeypatch.setattr(train_loop.Trainer, "train_epoch", original)
    resumed = train_loop.Trainer(cfg(tmp_path / "part", resume=True), task=BoxTask)
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_resume_refuses_another_tasks_checkpoint(tmp_path):
    train_loop.Trainer(cfg(tmp_path, epochs=1), task=BoxTask).fit()
    state = ts.load_checkpoint(tmp_path / ts.CHECKPOINT)
    ts.save_checkpoint(tmp_path / ts.CHECKPOINT, {**state, "task": "segmentation"})
    with pytest.raises(ShuntedError, match=r"last\.pdckpt: a segmentation run, not a boxes run$"):
        train_loop.Trainer(cfg(tmp_path, epochs=2, resume=True), task=BoxTask).fit()


def test_resume_with_no_epochs_left(tmp_path, capsys):
    """--resume --epochs N: N equal to the epochs done says so and succeeds (the run is complete, as a re-run of
    the same command expects); N smaller is an error naming both numbers. The old loop returned silently."""
    train_loop.Trainer(cfg(tmp_path, epochs=2), task=BoxTask).fit()
    capsys.readouterr()
    before = (tmp_path / "summary.json").read_bytes()
    train_loop.Trainer(cfg(tmp_path, epochs=2, resume=True), task=BoxTask).fit()
    out = capsys.readouterr().out
    assert (
        out.strip()
        == f"{tmp_path}: all 2 epochs are done already; nothing to train (pass --epochs > 2 to train further)"
    )
    assert (tmp_path / "summary.json").read_bytes() == before
    with pytest.raises(ShuntedError, match=r"holds 2 epochs, more than --epochs 1; pass --epochs > 2"):
        train_loop.Trainer(cfg(tmp_path, epochs=1, resume=True), task=BoxTask).fit()


def test_a_failed_checkpoint_write_leaves_no_summary_of_that_epoch(tmp_path, monkeypatch):
    """Disk full while writing epoch 2's last.pdckpt: summary.json and last.pdparams still say epoch 1 (the old
    order wrote them first and the summary claimed epoch 2), and a resume trains epoch 2 again."""
    original = ts.save_checkpoint
    calls = []

    def full_disk(path, state):
        calls.append(state["epoch"])
        if state["epoch"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(path, state)

    monkeypatch.setattr(ts, "save_checkpoint", full_disk)
    with pytest.raises(OSError):
        train_loop.Trainer(cfg(tmp_path, epochs=2), task=BoxTask).fit()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs_done"] == ts.load_checkpoint(tmp_path / ts.CHECKPOINT)["epoch"] == 1
    monkeypatch.setattr(ts, "save_checkpoint", original)
    train_loop.Trainer(cfg(tmp_path, epochs=2, resume=True), task=BoxTask).fit()
    assert json.loads((tmp_path / "summary.json").read_text())["epochs_done"] == 2


def test_records_of_the_checkpoints_epoch_are_written_again_on_resume(tmp_path, monkeypatch):
    """Stopped after last.pdckpt of the last epoch but before its records: the resume writes them."""
    original = train_loop.Trainer._write_records

    def stop_on_2(self, state, *args):
        if state["epoch"] == 2:
            raise KeyboardInterrupt
        return original(self, state, *args)

    monkeypatch.setattr(train_loop.Trainer, "_write_records", stop_on_2)
    with pytest.raises(KeyboardInterrupt):
        train_loop.Trainer(cfg(tmp_path, epochs=2), task=BoxTask).fit()
    assert json.loads((tmp_path / "summary.json").read_text())["epochs_done"] == 1
    monkeypatch.setattr(train_loop.Trainer, "_write_records", original)
    train_loop.Trainer(cfg(tmp_path, epochs=2, resume=True), task=BoxTask).fit()
    assert json.loads((tmp_path / "summary.json").read_text())["epochs_done"] == 2
    assert len(json.loads((tmp_path / "metrics.json").read_text())) == 2


def test_validation_counts_ties_as_shunted_eval_does():
    """Equal logits: shunted eval's topk_correct counts the label as top-1 (no logit is strictly larger); the
    trainer's validation now counts the same. paddle.topk (the old validation) took index 0 and counted 50 %."""
    from shunted.engine.train.classification import ClassificationTask
    from shunted.engine.world import World

    task = object.__new__(ClassificationTask)
    task.world, task.num_classes = World(), 2
    task.model = paddle.nn.Linear(3, 2)
    paddle.assign(paddle.zeros([3, 2]), task.model.weight)
    paddle.assign(paddle.zeros([2]), task.model.bias)  # every logit 0: a tie
    task.val_set = None
    x = paddle.ones([4, 3])
    y = paddle.to_tensor([0, 1, 0, 1])
    task.val_loader = [(x, y, paddle.arange(4))]
    scores = task.validate()
    assert scores["val_top1"] == 100.0
