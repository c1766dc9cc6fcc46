"""``shunted seg-train``: a Semantic FPN on a Shunted backbone, one process or many, resumable at every epoch.

The run folder follows ``shunted train`` (shunted/engine/train/loop.py, state.py): ``last.pdckpt`` (the full
state: model, AdamW moments, epoch, best mIoU, RNG states, config, metrics), ``last.pdparams`` /
``best.pdparams`` (weights; best = highest validation mIoU), ``metrics.csv`` / ``metrics.json`` (epoch, lr,
train loss, val mIoU, pixel accuracy, mean accuracy, seconds, images/s; every epoch), ``metrics.png`` (after the
last epoch and every 10th, when matplotlib is importable), ``config.yaml`` and ``summary.json`` (model, classes, ignore index, class names, best epoch, weights
sha256). Every file is written atomically; nothing non-finite is ever written; a folder holding a run is refused
without ``--resume``.

Recipe (shunted/config_schema.py, the segmentation keys): AdamW, poly schedule stepped every iteration,
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

import time
from functools import partial

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.optimizer.lr import LRScheduler

from ...config import get
from ...data.datasets import BAD_LABEL
from ...data.loader_guard import MarkFailures, failure_of
from ...data.seg_datasets import SegDataset, list_seg_samples
from ...data.seg_labels import check_crop_size, check_label_values, read_cache, scan_labels
from ...data.seg_transforms import SegEvalTransform, SegTrainTransform
from ...errors import DataError
from ...factory import create_model
from ..train.loop import train
from ..train.optim import optimizer_from_section
from ..train.task import LoopSettings, Task, capped_steps, last_validation, shuffled_batches
from ..world import World

TASK = "segmentation"
LABEL_CACHE = "label_counts.json"  # every label's size, mtime and value counts (shunted/data/seg_labels.py)


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


class SegmentationTask(Task):
    name = TASK
    best = ("val_miou", "best_miou")
    curve = ("val_miou", "val mIoU", "mIoU (%)")  # metrics.png's second panel
    shown = (("val_miou", "mIoU"), ("val_pixel_acc", "pixel acc"))

    def __init__(self, cfg: dict, world: World, settings: LoopSettings) -> None:
        super().__init__(cfg, world, settings)
        self.num_classes = int(get(cfg, "Arch.class_num"))
        self.ignore_index = int(get(cfg, "Arch.ignore_index"))
        self.class_names = get(cfg, "Arch.class_names")
        self.root = get(cfg, "DataLoader.Train.dataset.image_root")
        self.train_samples = list_seg_samples(self.root, get(cfg, "DataLoader.Train.dataset.list"))
        val_list = get(cfg, "DataLoader.Eval.dataset.list")
        val_root = get(cfg, "DataLoader.Eval.dataset.image_root") or self.root
        self.val_samples = list_seg_samples(val_root, val_list) if val_list else None
        self._check_labels()  # before the model is built and long before epoch 1
        self.model = create_model(
            get(cfg, "Arch.name"),
            num_classes=self.num_classes,
            backbone_pretrained=get(cfg, "Global.pretrained_model"),
            drop_path_rate=float(get(cfg, "Arch.drop_path_rate")),
        )
        self._build_data()
        self._build_optim()

    # -- setup ----------------------------------------------------------------------------------------------
    def _check_labels(self) -> None:
        """Every training and validation label's values (one bincount each, cached in the run folder by size and
        mtime) and the crop size against the training images: a bad label or crop stops here, before training."""
        cfg, cache_path = self.cfg, self.settings.output_dir / LABEL_CACHE
        cache = read_cache(cache_path)
        reduce = bool(get(cfg, "DataLoader.Train.dataset.reduce_zero_label"))
        val_reduce = get(cfg, "DataLoader.Eval.dataset.reduce_zero_label")
        splits = [(self.train_samples, reduce, "--list")]
        if self.val_samples is not None:
            splits.append(
                (self.val_samples, reduce if val_reduce is None else bool(val_reduce), "--val-list")
            )
        self.label_stats: dict[str, dict] = {}
        for samples, reduce_zero, flag in splits:
            stats = scan_labels((p for p in samples.labels if p is not None), cache)
            check_label_values(
                stats, self.num_classes, self.ignore_index, reduce_zero, f"{flag} {samples.source}"
            )
            self.label_stats.update(stats)
            if flag == "--list":
                t = get(cfg, "DataLoader.Train.transform")
                base = t.get("base_size")
                check_crop_size(
                    tuple(t["crop_size"]),
                    [tuple(e["shape"]) for e in stats.values()],
                    float(t["scale_range"][1]),
                    tuple(base) if base else None,
                )

    def run_files(self) -> dict:
        return {LABEL_CACHE: {"labels": self.label_stats}}

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
            flip_prob=float(t["hflip"]),
            photometric=bool(t["photometric"]),
            mean=tuple(pcfg.mean),
            std=tuple(pcfg.std),
        )
        reduce = bool(get(self.cfg, "DataLoader.Train.dataset.reduce_zero_label"))
        self.train_set = SegDataset(
            self.train_samples, self.transform, seed=self.settings.seed, train=True, reduce_zero_label=reduce
        )
        self.batch_size = int(get(self.cfg, "DataLoader.Train.sampler.batch_size"))
        what = f"--list {self.train_samples.source}"
        self.sampler = shuffled_batches(self.train_set, self.batch_size, self.world, what)
        self.workers = int(get(self.cfg, "DataLoader.Train.loader.num_workers"))
        h, w = self.train_set.transform.crop_size  # a crop the loader could not make: all BAD_LABEL
        unreadable = lambda i: (np.zeros((3, h, w), np.float32), np.full((h, w), BAD_LABEL, np.int64), i)  # noqa: E731
        self.loader = paddle.io.DataLoader(
            MarkFailures(self.train_set, unreadable),
            batch_sampler=self.sampler,
            num_workers=self.workers,
            return_list=True,
        )
        self.steps_per_epoch = capped_steps(len(self.sampler), self.settings.max_steps)
        self.val_set = None
        if self.val_samples is not None:
            scale = get(self.cfg, "DataLoader.Eval.transform.scale")
            val_reduce = get(self.cfg, "DataLoader.Eval.dataset.reduce_zero_label")
            transform = SegEvalTransform(mean=tuple(pcfg.mean), std=tuple(pcfg.std), scale=scale)
            self.val_set = SegDataset(
                self.val_samples,
                transform,
                ignore_index=self.ignore_index,
                reduce_zero_label=reduce if val_reduce is None else bool(val_reduce),
            )

    def _build_optim(self) -> None:
        opt = get(self.cfg, "Optimizer")
        lr = opt["lr"]
        self.peak_lr = float(lr["learning_rate"])
        self.total_iters = self.settings.epochs * self.steps_per_epoch
        self.scheduler = PolyLR(
            self.peak_lr,
            self.total_iters,
            float(lr["power"]),
            float(lr["end_lr"]),
            int(lr["warmup_iters"]),
            float(lr["warmup_ratio"]),
        )
        self.optimizer = optimizer_from_section(self.model, self.scheduler, opt)

    # -- one epoch --------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        # Paddle's sampler shuffles with RandomState(epoch): fold the seed in
        self.sampler.set_epoch(int(np.random.default_rng([self.settings.seed, epoch]).integers(0, 2**32 - 1)))
        self.train_set.set_epoch(epoch)

    def set_lr(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        self.scheduler.step(epoch * steps_per_epoch + step)  # the iteration number: poly by iteration

    def check_batch(self, batch) -> None:
        """Stop in one line on a sample the loader could not read, or a label value that is no class."""
        labels, index = batch[1].numpy(), batch[2].numpy()
        bad = (labels == BAD_LABEL).any(axis=(1, 2))
        if bad.any():  # marked by MarkFailures: the error, found again here
            i = int(index[bad][0])
            raise failure_of(self.train_samples.images[i], partial(self.train_set.__getitem__, i))
        wrong = (labels >= self.num_classes) & (labels != self.ignore_index)
        if wrong.any():
            row = int(np.flatnonzero(wrong.any(axis=(1, 2)))[0])
            value = int(labels[row][wrong[row]][0])
            raise DataError(
                f"{self.train_samples.labels[int(index[row])]}: label value {value} is outside "
                f"0..{self.num_classes - 1} and is not --ignore-index {self.ignore_index}"
            )

    def loss(self, net, batch, rng) -> paddle.Tensor:
        return pixel_cross_entropy(net(batch[0]), batch[1].astype("int64"), self.ignore_index)

    # -- validation and records -------------------------------------------------------------------------------
    @paddle.no_grad()
    def validate(self) -> dict:
        """Whole-image validation (shunted/engine/seg/evaluate.py): each process takes every world.size-th image,
        the confusion matrices are summed; metrics at the label's size."""
        if self.val_set is None:
            return {}
        from .evaluate import SegInference, evaluate_segmentation

        self.model.eval()
        start = time.perf_counter()
        workers = get(self.cfg, "DataLoader.Eval.loader.num_workers")
        result = evaluate_segmentation(  # val_set's ignore_index pixels are not counted
            lambda batch: self.model(paddle.to_tensor(batch)).numpy(),
            self.val_set,
            self.num_classes,
            SegInference(batch_size=int(get(self.cfg, "DataLoader.Eval.sampler.batch_size"))),
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

    def state(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_names": self.class_names,
        }

    def summary(self, rows: list[dict]) -> dict:
        scores = getattr(self, "last_scores", {})
        return {
            **self.state(),
            "backbone_pretrained": get(self.cfg, "Global.pretrained_model"),
            "last_val": last_validation(rows, ("val_miou", "val_pixel_acc", "val_mean_acc")),
            "last_class_iou": scores.get("class_iou"),
            "miou_mean_over": scores.get("mean_over"),
            "total_iters": self.total_iters,
        }


def seg_train(cfg: dict) -> dict:
    """Run (or resume) the segmentation training described by a resolved config; returns the per-epoch metrics."""
    return train(cfg, SegmentationTask)
