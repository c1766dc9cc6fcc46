"""``shunted seg-train``: a Semantic FPN on a Shunted backbone, one process or many, resumable at every epoch.

The run folder follows ``shunted train`` (shunted/engine/train/loop.py, state.py): ``last.pdckpt`` (the full
state: model, AdamW moments, epoch, best mIoU, RNG states, config, metrics), ``last.pdparams`` /
``best.pdparams`` (weights; best = highest validation mIoU), ``metrics.csv`` / ``metrics.json`` (epoch, lr,
train loss, val mIoU, pixel accuracy, mean accuracy, seconds, images/s; every epoch), ``metrics.png`` (after the
last epoch and every 10th, when matplotlib is importable), ``config.yaml`` and ``summary.json`` (model, classes, ignore index, class names, best epoch, weights
sha256). Every file is written atomically; nothing non-finite is ever written; a folder holding a run is refused
without ``--resume``.

Recipe (shunted/engine/seg/config.py): AdamW, poly schedule stepped every iteration,
lr(it) = (lr − end_lr)(1 − it / total)^power + end_lr with total = epochs × steps per epoch, optionally
mmcv's linear warm-up (the poly rate × (1 − (1 − it / warmup_iters)(1 − warmup_ratio))); no weight decay on
1-D parameters. Loss: pixel cross-entropy averaged over the non-ignored pixels of the batch (``ignore_index``).

Reproducibility, as the classification trainer: data order from a DistributedBatchSampler shuffled by
(seed, epoch), augmentation from a Generator per (seed, epoch, sample) (``SegDataset``), stochastic depth from
Paddle's generator re-seeded by (seed, epoch, rank) every epoch, the rate from the iteration number alone. A run
resumed after epoch e trains epoch e + 1 as an uninterrupted run would.

Several processes (``paddle.distributed.launch``): each trains on its shard through ``paddle.DataParallel``;
losses are all-reduced, validation is sharded and the confusion matrices summed; only rank 0 writes.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.optimizer.lr import LRScheduler
from tqdm import tqdm

from ...config import get
from ...data.datasets import BAD_LABEL
from ...data.loader_guard import MarkFailures, failure_of
from ...data.seg_datasets import SegDataset, list_seg_samples
from ...data.seg_transforms import SegEvalTransform, SegTrainTransform
from ...errors import DataError, ShuntedError
from ...factory import create_model
from ...fileio import write_json_atomic
from ..train import state as ts
from ..train.loop import _first, config_changes, seed_epoch, weights_digest
from ..train.optim import optimizer_from_section
from ..world import World, init_world
from .config import resolve_seg_config

log = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")

TASK = "segmentation"


def poly_lr(
    it: int,
    total: int,
    peak: float,
    power: float = 1.0,
    end_lr: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """The rate of iteration ``it`` (0-based) of ``total``: mmcv's ``PolyLrUpdaterHook`` (by iteration)."""
    progress = min(it, total) / max(total, 1)
    lr = (peak - end_lr) * (1.0 - progress) ** power + end_lr
    if warmup_iters and it < warmup_iters:
        lr *= 1.0 - (1.0 - it / warmup_iters) * (1.0 - warmup_ratio)
    return lr


class PolyLR(LRScheduler):
    """``step(it)`` sets ``poly_lr(it, ...)``; the trainer always passes the iteration number."""

    def __init__(
        self, peak: float, total: int, power: float, end_lr: float, warmup_iters: int, warmup_ratio: float
    ):
        self.total, self.power, self.end_lr = total, power, end_lr
        self.warmup_iters, self.warmup_ratio = warmup_iters, warmup_ratio
        super().__init__(learning_rate=peak, last_epoch=-1)

    def get_lr(self) -> float:
        it = max(int(self.last_epoch), 0)
        return poly_lr(
            it, self.total, self.base_lr, self.power, self.end_lr, self.warmup_iters, self.warmup_ratio
        )


def pixel_cross_entropy(logits: paddle.Tensor, label: paddle.Tensor, ignore_index: int) -> paddle.Tensor:
    """Mean cross-entropy over the pixels whose label is not ``ignore_index`` (0 when there are none)."""
    per_pixel = F.cross_entropy(
        logits.astype("float32"), label.unsqueeze(1), ignore_index=ignore_index, reduction="none", axis=1
    )
    valid = (label != ignore_index).astype("float32").sum()
    return per_pixel.sum() / paddle.clip(valid, min=1.0)


class SegTrainer:
    def __init__(self, cfg: dict, world: World | None = None) -> None:
        self.cfg = cfg
        self.world = world or World()
        self.run_dir = Path(get(cfg, "Global.output_dir"))
        self.seed = int(get(cfg, "Global.seed"))
        self.epochs = int(get(cfg, "Global.epochs"))
        self.max_steps = get(cfg, "Global.max_steps_per_epoch")
        self.eval_interval = int(get(cfg, "Global.eval_interval"))
        self.num_classes = int(get(cfg, "Arch.num_classes"))
        self.ignore_index = int(get(cfg, "Arch.ignore_index"))
        self.class_names = get(cfg, "Arch.class_names")
        self.root = get(cfg, "DataLoader.Train.dataset.data_root")
        paddle.seed(self.seed)
        self.train_samples = list_seg_samples(self.root, get(cfg, "DataLoader.Train.dataset.list"))
        val_list = get(cfg, "DataLoader.Eval.dataset.list")
        self.val_samples = list_seg_samples(self.root, val_list) if val_list else None
        self.model = create_model(
            get(cfg, "Arch.name"),
            num_classes=self.num_classes,
            backbone_pretrained=get(cfg, "Global.pretrained_model"),
            drop_path_rate=float(get(cfg, "Arch.drop_path_rate")),
        )
        self._build_data()
        self._build_optim()
        self.net = paddle.DataParallel(self.model) if self.world.size > 1 else self.model
        self.start_epoch, self.best_miou, self.best_epoch, self.rows = 0, None, None, []

    # -- setup ----------------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        t = get(self.cfg, "DataLoader.Train.transform")
        pcfg = self.model.pretrained_cfg
        base = t.get("base_size")
        self.transform = SegTrainTransform(
            crop_size=tuple(t["crop_size"]),
            scale_range=tuple(t["scale_range"]),
            base_size=tuple(base) if base else None,
            cat_max_ratio=float(t["cat_max_ratio"]),
            ignore_index=self.ignore_index,
            flip_prob=float(t["flip_prob"]),
            photometric=bool(t["photometric"]),
            mean=tuple(pcfg.mean),
            std=tuple(pcfg.std),
        )
        reduce = bool(get(self.cfg, "DataLoader.Train.dataset.reduce_zero_label"))
        self.train_set = SegDataset(
            self.train_samples, self.transform, seed=self.seed, train=True, reduce_zero_label=reduce
        )
        self.batch_size = int(get(self.cfg, "DataLoader.Train.sampler.batch_size"))
        self.sampler = paddle.io.DistributedBatchSampler(
            self.train_set,
            batch_size=self.batch_size,
            num_replicas=self.world.size,
            rank=self.world.rank,
            shuffle=True,
            drop_last=True,
        )
        if len(self.sampler) == 0:
            raise DataError(
                f"--list {self.train_samples.source}: {len(self.train_samples)} images give no full step of "
                f"{self.batch_size} x {self.world.size} processes (lower --batch-size)"
            )
        self.workers = int(get(self.cfg, "DataLoader.Train.loader.num_workers"))
        h, w = self.train_set.transform.crop_size  # a crop the loader could not make: all BAD_LABEL
        unreadable = lambda i: (np.zeros((3, h, w), np.float32), np.full((h, w), BAD_LABEL, np.int64), i)  # noqa: E731
        self.loader = paddle.io.DataLoader(
            MarkFailures(self.train_set, unreadable),
            batch_sampler=self.sampler,
            num_workers=self.workers,
            return_list=True,
        )
        self.steps_per_epoch = len(self.sampler)
        if self.max_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, int(self.max_steps))
        self.val_set = None
        if self.val_samples is not None:
            scale = get(self.cfg, "DataLoader.Eval.transform.scale")
            transform = SegEvalTransform(mean=tuple(pcfg.mean), std=tuple(pcfg.std), scale=scale)
            self.val_set = SegDataset(
                self.val_samples,
                transform,
                ignore_index=self.ignore_index,
                reduce_zero_label=self.train_set.reduce_zero_label,
            )

    def _build_optim(self) -> None:
        opt = get(self.cfg, "Optimizer")
        lr = opt["lr"]
        self.peak_lr = float(opt["learning_rate"])
        self.total_iters = self.epochs * self.steps_per_epoch
        self.scheduler = PolyLR(
            self.peak_lr,
            self.total_iters,
            float(lr["power"]),
            float(lr["end_lr"]),
            int(lr["warmup_iters"]),
            float(lr["warmup_ratio"]),
        )
        self.optimizer = optimizer_from_section(self.model, self.scheduler, opt)

    # -- state ----------------------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        return {
            **ts.run_state(epoch, self.model, self.optimizer, self.cfg, self.rows),
            "task": TASK,
            "ema": None,
            "best_miou": self.best_miou,
            "best_epoch": self.best_epoch,
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_names": self.class_names,
        }

    def resume(self) -> None:
        path = self.run_dir / ts.CHECKPOINT
        state = ts.load_checkpoint(path)
        if state.get("task") != TASK:
            raise ShuntedError(f"{path}: a classification run (shunted train), not a seg-train run")
        if state.get("num_classes") != self.num_classes:
            raise ShuntedError(
                f"{path}: trained {state.get('num_classes')} classes, this run has {self.num_classes} (--num-classes)"
            )
        ts.restore_run_state(path, state, self.model, self.optimizer)
        self.start_epoch = int(state["epoch"])
        self.best_miou, self.best_epoch = state.get("best_miou"), state.get("best_epoch")
        self.rows = list(state.get("metrics") or [])
        changed = config_changes(state.get("config"), self.cfg)
        if changed and self.world.main:
            log.warning("%s: config differs from the checkpoint's in %s", path, ", ".join(changed))

    # -- loop -----------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        if get(self.cfg, "Global.resume"):
            self.resume()
        elif self.world.main and (self.run_dir / ts.CHECKPOINT).exists():
            raise ShuntedError(
                f"{self.run_dir}: holds a run already; pass --resume or choose another --output"
            )
        self.saved_epoch = self.start_epoch
        if self.world.main:
            for orphan in ts.open_run_dir(self.run_dir, self.cfg):
                log.info("removed %s, a partial write of an interrupted run", orphan)
        for epoch in range(self.start_epoch, self.epochs):
            row = self.train_epoch(epoch)
            self.world.broadcast_buffers(self.model)
            last = epoch + 1 == self.epochs
            if (epoch + 1) % self.eval_interval == 0 or last:
                row.update(self.validate())
            digest, per_rank = self.check_ranks_agree()
            miou = row.get("val_miou")
            improved = miou is not None and (self.best_miou is None or miou > self.best_miou)
            if improved:
                self.best_miou, self.best_epoch = miou, epoch + 1
            self.rows.append(row)
            if self.world.main:
                self.save(epoch + 1, improved, digest, per_rank)
                tqdm.write(_summary(row, self.epochs))
        return {
            "epochs": self.epochs,
            "best_miou": self.best_miou,
            "best_epoch": self.best_epoch,
            "rows": self.rows,
        }

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        seed_epoch(self.seed, epoch, self.world.rank)
        # Paddle's sampler shuffles with RandomState(epoch): fold the seed in
        self.sampler.set_epoch(int(np.random.default_rng([self.seed, epoch]).integers(0, 2**32 - 1)))
        self.train_set.set_epoch(epoch)
        epoch_lr = None
        loss_sum, seen, start = 0.0, 0, time.perf_counter()
        bar = tqdm(
            total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}", disable=not self.world.main
        )
        for step, (x, y, index) in enumerate(self.loader):
            if step >= self.steps_per_epoch:
                break
            self._check_batch(y.numpy(), index.numpy(), bar)
            self.scheduler.step(epoch * self.steps_per_epoch + step)
            if epoch_lr is None:
                epoch_lr = float(self.optimizer.get_lr())
            loss = self.train_step(x, y)
            if not math.isfinite(loss):
                bar.close()
                raise self._non_finite_stop(f"loss is {loss} at epoch {epoch + 1} step {step + 1}")
            loss_sum += loss * x.shape[0]
            seen += x.shape[0]
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.4f}",
                lr=f"{self.optimizer.get_lr():.3g}",
                img_s=f"{seen * self.world.size / (time.perf_counter() - start):.2f}",
            )
        bar.close()
        bad = ts.non_finite({"model": self.model.state_dict()})
        if bad:
            raise self._non_finite_stop(f"weights not finite after epoch {epoch + 1} ({_first(bad)})")
        seconds = time.perf_counter() - start
        total_loss, total_seen = self.world.sum([loss_sum, float(seen)])
        return {
            "epoch": epoch + 1,
            "lr": epoch_lr,  # the rate at the epoch's first step (the schedule moves every step)
            "train_loss": total_loss / max(total_seen, 1),
            "images": int(total_seen),
            "seconds": round(seconds, 3),
            "img_per_s": round(total_seen / seconds, 3) if seconds > 0 else None,
        }

    def _check_batch(self, labels: np.ndarray, index: np.ndarray, bar) -> None:
        """Stop in one line on a sample the loader could not read, or a label value that is no class."""
        bad = (labels == BAD_LABEL).any(axis=(1, 2))
        if bad.any():  # marked by MarkFailures: the error, found again here
            bar.close()
            i = int(index[bad][0])
            raise failure_of(self.train_samples.images[i], partial(self.train_set.__getitem__, i))
        wrong = (labels >= self.num_classes) & (labels != self.ignore_index)
        if wrong.any():
            bar.close()
            row = int(np.flatnonzero(wrong.any(axis=(1, 2)))[0])
            value = int(labels[row][wrong[row]][0])
            raise DataError(
                f"{self.train_samples.labels[int(index[row])]}: label value {value} is outside "
                f"0..{self.num_classes - 1} and is not --ignore-index {self.ignore_index}"
            )

    def train_step(self, x: paddle.Tensor, y: paddle.Tensor) -> float:
        loss = pixel_cross_entropy(self.net(x), y.astype("int64"), self.ignore_index)
        value = float(loss)
        if (
            self.world.size > 1
        ):  # every rank must see a bad loss, or the healthy ones hang in the next all-reduce
            value = self.world.sum([value])[0] / self.world.size
        if not math.isfinite(value):
            return value
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        return float(loss)

    @paddle.no_grad()
    def validate(self) -> dict:
        """Whole-image validation (shunted/engine/seg/evaluate.py): each process takes every world.size-th image,
        the confusion matrices are summed; metrics at the label's size."""
        if self.val_set is None:
            return {}
        from .evaluate import evaluate_segmentation

        self.model.eval()
        start = time.perf_counter()
        workers = get(self.cfg, "DataLoader.Eval.loader.num_workers")
        result = evaluate_segmentation(
            lambda batch: self.model(paddle.to_tensor(batch)).numpy(),
            self.val_set,
            self.num_classes,
            self.ignore_index,
            batch_size=int(get(self.cfg, "DataLoader.Eval.sampler.batch_size")),
            workers=self.workers if workers is None else int(workers),
            progress=self.world.main,
            world=self.world,
        )
        self.last_scores = result
        return {
            "val_miou": result["miou"],
            "val_pixel_acc": result["pixel_accuracy"],
            "val_mean_acc": result["mean_accuracy"],
            "val_seconds": round(time.perf_counter() - start, 3),
        }

    def check_ranks_agree(self) -> tuple[str, list[str]]:
        digest = weights_digest(self.model)
        words = [int.from_bytes(bytes.fromhex(digest[i : i + 16]), "big", signed=True) for i in (0, 16)]
        per_rank = [
            "".join(w.to_bytes(8, "big", signed=True).hex() for w in ws)
            for ws in self.world.gather_ints(words)
        ]
        if len(set(per_rank)) > 1:
            raise ShuntedError(f"the {self.world.size} processes ended the epoch with different weights")
        return digest, per_rank

    def _non_finite_stop(self, what: str) -> ShuntedError:
        kept = getattr(self, "saved_epoch", self.start_epoch)
        where = self.run_dir / ts.CHECKPOINT
        kept_text = f"{where} keeps epoch {kept}, the last good one" if kept else "no checkpoint was written"
        return ShuntedError(f"{what}: stopped; {kept_text} — lower --lr or set Optimizer.grad_clip")

    def save(self, epoch: int, improved: bool, digest: str, per_rank: list[str]) -> None:
        state = self.state(epoch)
        bad = ts.non_finite(state)
        if bad:
            raise self._non_finite_stop(f"weights not finite at the end of epoch {epoch} ({_first(bad)})")
        ts.save_weights(self.run_dir / "last.pdparams", state["model"])
        if improved:
            ts.save_weights(self.run_dir / "best.pdparams", state["model"])
        # metrics.png at the end (and every 10 epochs): drawing it costs seconds, the CSV is there every epoch
        ts.write_metrics(
            self.run_dir, self.rows, plot=epoch == self.epochs or epoch % 10 == 0, curve=MIOU_CURVE
        )
        last_val = next((r for r in reversed(self.rows) if r.get("val_miou") is not None), None)
        write_json_atomic(
            self.run_dir / "summary.json",
            {
                "task": TASK,
                "model": get(self.cfg, "Arch.name"),
                "num_classes": self.num_classes,
                "ignore_index": self.ignore_index,
                "class_names": self.class_names,
                "backbone_pretrained": get(self.cfg, "Global.pretrained_model"),
                "epochs_done": epoch,
                "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch,
                "best_miou": self.best_miou,
                "best_epoch": self.best_epoch,
                "last_val": None
                if last_val is None
                else {k: last_val[k] for k in ("epoch", "val_miou", "val_pixel_acc", "val_mean_acc")},
                "last_class_iou": getattr(self, "last_scores", {}).get("class_iou"),
                "miou_mean_over": getattr(self, "last_scores", {}).get("mean_over"),
                "world_size": self.world.size,
                "weights_sha256": digest,
                "weights_sha256_per_rank": per_rank,
                "peak_lr": self.peak_lr,
                "total_iters": self.total_iters,
            },
        )
        ts.save_checkpoint(self.run_dir / ts.CHECKPOINT, state)  # last: its presence marks a complete epoch
        self.saved_epoch = epoch


# metrics.png's second panel (shunted/engine/train/state.py ``plot_metrics``)
MIOU_CURVE = ("val_miou", "val mIoU", "mIoU (%)")


def _summary(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}", f"lr {row['lr']:.3g}"]
    if row.get("val_miou") is not None:
        parts.append(f"val mIoU {row['val_miou']:.2f} % pixel acc {row['val_pixel_acc']:.2f} %")
    parts.append(f"{row['img_per_s']} img/s")
    return " | ".join(parts)


def seg_train(cfg: dict) -> dict:
    """Run (or resume) the segmentation training described by a resolved config; returns the per-epoch metrics."""
    return SegTrainer(cfg, init_world()).fit()


def seg_train_from_args(args: argparse.Namespace) -> dict:
    return seg_train(resolve_seg_config(args))
