"""The one training loop of every task (``shunted train``, ``shunted seg-train``, ...): one process or many
(``paddle.distributed.launch``), resumable at every epoch. The task (``task.py:Task``) supplies the model, the
data, the optimiser and schedule, the loss of one step and the validation metric; the loop knows nothing else.

Reproducibility: data order comes from the task's sampler shuffled by (seed, epoch); augmentation from a
Generator per (seed, epoch, sample); the task's own randomness (Mixup) and stochastic depth from generators seeded
by (seed, epoch, rank) at the start of each epoch. A run resumed from ``last.pdckpt`` after epoch e therefore
trains epoch e + 1 exactly as an uninterrupted run would (bit-identical on the same machine and thread count).

Only rank 0 writes files; losses and metrics are all-reduced; at the end of every epoch the ranks compare a
hash of their weights and stop if they differ. A non-finite loss stops the run (ShuntedError) before anything is
written, so ``last.pdckpt`` stays the last good epoch. ``last.pdckpt`` is written first at the end of an epoch,
then the weights, metrics and ``summary.json``: a failed write (disk full) never leaves a summary that claims an
epoch the checkpoint does not hold, and a resume writes the records of the checkpoint's epoch again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings

import numpy as np
import paddle
from tqdm import tqdm

from ...config import get
from ...errors import ShuntedError
from ...fileio import write_json_atomic
from ...models.weights import weights_digest
from ..world import World, init_world
from . import state as ts
from .ema import ModelEMA
from .task import LoopSettings, Task

log = logging.getLogger(__name__)
# Paddle's BatchNorm says this on every training forward; it describes the intended behaviour.
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed Paddle's generator (dropout, stochastic depth) for this epoch and process."""
    paddle.seed(int(np.random.default_rng([seed, epoch, rank, 7]).integers(0, 2**31 - 1)))


class Trainer:
    """The loop: ``Trainer(cfg, ClassificationTask, world).fit()``. It imports no task (a contract in
    pyproject.toml): the task is what the caller passes."""

    def __init__(self, cfg: dict, task: type[Task], world: World | None = None) -> None:
        self.cfg = cfg
        self.world = world or World()
        self.settings = s = LoopSettings.from_config(cfg)
        self.run_dir, self.seed, self.epochs = s.output_dir, s.seed, s.epochs
        paddle.seed(self.seed)  # the model's initialisation
        self.task = task(cfg, self.world, s)
        self.model, self.optimizer = self.task.model, self.task.optimizer
        self.steps_per_epoch = self.task.steps_per_epoch
        self.ema = ModelEMA(self.model, s.ema_decay) if s.ema_decay is not None else None
        self.amp = s.amp
        if self.amp and paddle.device.get_device().startswith("cpu") and self.world.main:
            log.warning(
                "--amp %s: Paddle runs CPU training in float32; mixed precision needs a GPU", self.amp
            )
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**16) if self.amp == "fp16" else None
        self.net = paddle.DataParallel(self.model) if self.world.size > 1 else self.model
        self.start_epoch, self.best_value, self.best_epoch, self.rows = 0, None, None, []
        self.saved_epoch = 0  # what last.pdckpt holds (0: no checkpoint yet)

    # -- state ----------------------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        return {
            **ts.run_state(epoch, self.model, self.optimizer, self.cfg, self.rows),
            "task": self.task.name,
            "ema": ts.to_numpy(self.ema.state) if self.ema else None,
            self.task.best[1]: self.best_value,
            "best_epoch": self.best_epoch,
            **self.task.state(),
        }

    def resume(self) -> dict:
        path = self.run_dir / ts.CHECKPOINT
        state = ts.load_checkpoint(path)
        saved_task = state.get("task", "classification")  # checkpoints before the task key: shunted train's
        if saved_task != self.task.name:
            raise ShuntedError(f"{path}: a {saved_task} run, not a {self.task.name} run")
        self.task.check_resume(path, state)
        ts.restore_run_state(path, state, self.model, self.optimizer)
        if self.ema and state.get("ema"):
            self.ema.load(state["ema"])
        self.start_epoch = self.saved_epoch = int(state["epoch"])
        self.best_value, self.best_epoch = state.get(self.task.best[1]), state.get("best_epoch")
        self.rows = list(state.get("metrics") or [])
        changed = config_changes(state.get("config"), self.cfg)
        if changed and self.world.main:
            log.warning("%s: config differs from the checkpoint's in %s", path, ", ".join(changed))
        return state

    # -- loop -----------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        if self.settings.resume:
            state = self.resume()
            if self.start_epoch >= self.epochs:
                return self._nothing_to_do(state)
        elif self.world.main and (self.run_dir / ts.CHECKPOINT).exists():
            raise ShuntedError(
                f"{self.run_dir}: holds a run already; pass --resume or choose another --output"
            )
        if self.world.main:
            for orphan in ts.open_run_dir(self.run_dir, self.cfg):  # left by a process killed mid-write
                log.info("removed %s, a partial write of an interrupted run", orphan)
            for name, value in self.task.run_files().items():
                write_json_atomic(self.run_dir / name, value)
            if self.settings.resume:
                self._repair_records(state)
        writer = self._visualdl()
        for epoch in range(self.start_epoch, self.epochs):
            row = self.train_epoch(epoch)
            self.world.broadcast_buffers(self.model)
            if (epoch + 1) % self.settings.eval_interval == 0 or epoch + 1 == self.epochs:
                row.update(self.task.validate())
            digest, per_rank = self.check_ranks_agree()
            value = row.get(self.task.best[0])
            improved = value is not None and (self.best_value is None or value > self.best_value)
            if improved:
                self.best_value, self.best_epoch = value, epoch + 1
            self.rows.append(row)
            if self.world.main:
                self.save(epoch + 1, improved, digest, per_rank)
                if writer is not None:
                    for key, v in row.items():
                        if key != "epoch" and v is not None:
                            writer.add_scalar(f"train/{key}", v, epoch + 1)
                tqdm.write(self._line(row))
        return self.result()

    def result(self) -> dict:
        return {
            "epochs": self.epochs,
            self.task.best[1]: self.best_value,
            "best_epoch": self.best_epoch,
            "rows": self.rows,
        }

    def _nothing_to_do(self, state: dict) -> dict:
        """``--resume --epochs N`` with N <= the epochs the checkpoint holds (timm and PaddleClas end silently)."""
        path = self.run_dir / ts.CHECKPOINT
        if self.start_epoch > self.epochs:
            raise ShuntedError(
                f"{path}: holds {self.start_epoch} epochs, more than --epochs {self.epochs}; "
                f"pass --epochs > {self.start_epoch} to train further (or use its weights as they are)"
            )
        if self.world.main:
            self._repair_records(state)
            tqdm.write(
                f"{self.run_dir}: all {self.epochs} epochs are done already; nothing to train "
                f"(pass --epochs > {self.epochs} to train further)"
            )
        return self.result()

    def _repair_records(self, state: dict) -> None:
        """Write the weights, metrics and summary of the checkpoint's epoch again if ``summary.json`` does not
        hold it (a run stopped between writing last.pdckpt and its records)."""
        try:
            done = json.loads((self.run_dir / "summary.json").read_text(encoding="utf-8")).get("epochs_done")
        except (OSError, ValueError, AttributeError):
            done = None
        if done != self.saved_epoch:
            log.info("%s: writing the records of epoch %d again", self.run_dir, self.saved_epoch)
            digest = weights_digest(self.model)
            self._write_records(state, self.best_epoch == self.saved_epoch, digest, [digest[:32]])

    def train_epoch(self, epoch: int) -> dict:
        task = self.task
        task.train_mode()
        seed_epoch(self.seed, epoch, self.world.rank)
        task.set_epoch(epoch)
        rng = np.random.default_rng([self.seed, epoch, self.world.rank, 1])
        epoch_lr, loss_sum, seen, start = None, 0.0, 0, time.perf_counter()
        bar = tqdm(
            total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}", disable=not self.world.main
        )
        with contextlib.closing(bar):
            for step, batch in enumerate(task.loader):
                if step >= self.steps_per_epoch:
                    break
                task.check_batch(batch)
                task.set_lr(epoch, step, self.steps_per_epoch)
                if epoch_lr is None:
                    epoch_lr = float(self.optimizer.get_lr())
                loss = self.train_step(batch, rng)
                if not math.isfinite(loss):
                    raise self._non_finite_stop(f"loss is {loss} at epoch {epoch + 1} step {step + 1}")
                n = task.batch_len(batch)
                loss_sum += loss * n
                seen += n
                bar.update(1)
                rate = seen * self.world.size / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.optimizer.get_lr():.3g}", img_s=f"{rate:.2f}")
        # the last step's update shows in no loss: check the weights (every rank, so all of them stop together)
        bad = self._non_finite_state()
        if bad:
            raise self._non_finite_stop(f"weights not finite after epoch {epoch + 1} ({_first(bad)})")
        seconds = time.perf_counter() - start
        total_loss, total_seen = self.world.sum([loss_sum, float(seen)])
        return {
            "epoch": epoch + 1,
            "lr": epoch_lr,  # the rate of the epoch's first step
            "train_loss": total_loss / max(total_seen, 1),
            "images": int(total_seen),
            "seconds": round(seconds, 3),
            "img_per_s": round(total_seen / seconds, 3) if seconds > 0 else None,
        }

    def train_step(self, batch, rng: np.random.Generator) -> float:
        with self._autocast():
            loss = self.task.loss(self.net, batch, rng)
        value = float(loss)
        if (
            self.world.size > 1
        ):  # every rank must see a bad loss, or the healthy ones hang in the next all-reduce
            value = self.world.sum([value])[0] / self.world.size
        if not math.isfinite(value):
            return value
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        if self.ema is not None:
            self.ema.update(self.model)
        return float(loss)

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(dtype={"bf16": "bfloat16", "fp16": "float16"}[self.amp])

    def check_ranks_agree(self) -> tuple[str, list[str]]:
        """This process's weights sha256 and every process's first 128 bits of it; differing ones stop the run."""
        digest = weights_digest(self.model)
        words = [int.from_bytes(bytes.fromhex(digest[i : i + 16]), "big", signed=True) for i in (0, 16)]
        per_rank = [
            "".join(w.to_bytes(8, "big", signed=True).hex() for w in ws)
            for ws in self.world.gather_ints(words)
        ]
        if len(set(per_rank)) > 1:
            raise ShuntedError(f"the {self.world.size} processes ended the epoch with different weights")
        return digest, per_rank

    def _non_finite_state(self) -> list[str]:
        """The model, EMA and optimiser tensors holding NaN or ±inf."""
        return ts.non_finite(
            {
                "model": self.model.state_dict(),
                "ema": self.ema.state if self.ema else {},
                "optimizer": ts.optimizer_state(self.optimizer, self.model),
            }
        )

    def _non_finite_stop(self, what: str) -> ShuntedError:
        """The one-line error for a non-finite loss or state; it names the checkpoint that is kept."""
        kept, where = self.saved_epoch, self.run_dir / ts.CHECKPOINT
        kept_text = f"{where} keeps epoch {kept}, the last good one" if kept else "no checkpoint was written"
        return ShuntedError(f"{what}: stopped; {kept_text} — lower --lr or enable Optimizer.grad_clip")

    def save(self, epoch: int, improved: bool, digest: str, per_rank: list[str]) -> None:
        state = self.state(epoch)
        bad = ts.non_finite(state)  # before anything is written: no file under any name is ever non-finite
        if bad:
            raise self._non_finite_stop(f"weights not finite at the end of epoch {epoch} ({_first(bad)})")
        # first: the records below never name an epoch last.pdckpt does not hold (a full disk stops the run here)
        ts.save_checkpoint(self.run_dir / ts.CHECKPOINT, state)
        self.saved_epoch = epoch
        self._write_records(state, improved, digest, per_rank)

    def _write_records(self, state: dict, improved: bool, digest: str, per_rank: list[str]) -> None:
        """The weights, metrics files and summary.json of checkpoint ``state``'s epoch."""
        epoch = int(state["epoch"])
        ts.save_weights(self.run_dir / "last.pdparams", state["model"])
        if improved:
            ts.save_weights(self.run_dir / "best.pdparams", state["model"])
        if state.get("ema") is not None:
            ts.save_weights(self.run_dir / "ema.pdparams", state["ema"])
        # metrics.png at the end (and every 10 epochs): drawing it costs seconds, the CSV is there every epoch
        rows = list(state["metrics"])
        plot = epoch == self.epochs or epoch % 10 == 0
        ts.write_metrics(self.run_dir, rows, plot=plot, curve=self.task.curve)
        write_json_atomic(
            self.run_dir / "summary.json",
            {
                "task": self.task.name,
                "model": get(self.cfg, "Arch.name", None),
                **self.task.summary(rows),
                "epochs_done": epoch,
                "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch,
                self.task.best[1]: state[self.task.best[1]],
                "best_epoch": state["best_epoch"],
                "world_size": self.world.size,
                "weights_sha256": digest,
                "weights_sha256_per_rank": per_rank,  # first 128 bits, gathered from every process each epoch
                "peak_lr": self.task.peak_lr,
            },
        )

    def _line(self, row: dict) -> str:
        parts = [
            f"epoch {row['epoch']}/{self.epochs}",
            f"loss {row['train_loss']:.4f}",
            f"lr {row['lr']:.3g}",
        ]
        val = self.task.describe(row)
        if val:
            parts.append(val)
        parts.append(f"{row['img_per_s']} img/s")
        return " | ".join(parts)

    def _visualdl(self):
        if not (self.world.main and self.settings.use_visualdl):
            return None
        try:
            from visualdl import LogWriter
        except ImportError:
            log.warning(
                "Global.use_visualdl: visualdl is not installed (pip install 'shunted-paddle[visualdl]')"
            )
            return None
        return LogWriter(logdir=str(self.run_dir / "visualdl"))


def _first(names: list[str]) -> str:
    """``model.head.weight`` or ``3 tensors: model.head.weight, ...``."""
    return names[0] if len(names) == 1 else f"{len(names)} tensors: {names[0]}, ..."


def _diff(a: dict, b: dict, prefix: str = "", ignore: set[str] = frozenset()) -> set[str]:
    out = set()
    for key in set(a) | set(b):
        path = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out |= _diff(va, vb, path + ".", ignore)
        elif va != vb and path not in ignore:
            out.add(path)
    return out


def config_changes(saved: dict | None, cfg: dict) -> list[str]:
    """The dotted keys (sorted) in which a checkpoint's config and this run's differ, apart from the two a
    resume changes (``Global.resume``, ``Global.output_dir``); the loop warns of them."""
    return sorted(_diff(saved or {}, cfg, ignore={"Global.resume", "Global.output_dir"}))


def train(cfg: dict, task: type[Task]) -> dict:
    """Run (or resume) the training a resolved config describes, for ``task``; returns the per-epoch metrics."""
    return Trainer(cfg, task, init_world()).fit()
