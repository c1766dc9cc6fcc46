"""``shunted det-train``: RetinaNet on a Shunted backbone, on the one training loop (shunted/engine/train/loop.py).

``DetectionTask`` is what detection adds to the loop (which it does not change): the model
(``create_model(..., backbone_pretrained=)``, stages 1..N frozen with ``Arch.freeze_stages``, gradient
checkpointing of the backbone blocks with ``Arch.recompute``), the data (shunted/data/det_datasets.py, the
training transform of det_transforms.py: keep-ratio resize, flip 0.5; batches padded to the largest image, a
multiple of 32), the loss of one step (shunted/models/retinanet.py ``retina_loss``: focal + L1 over the batch's
positives), the schedule (mmcv's: linear warm-up by iteration, steps ×0.1 by epoch; ``det_lr``), and validation
by COCO AP (shunted/engine/det/evaluate.py: the inference loop sharded over the processes, scored on rank 0 and
broadcast). The run folder is the other tasks': ``last.pdckpt`` (resume bit-identical), ``last.pdparams`` /
``best.pdparams`` (best = highest val AP), metrics, ``summary.json`` (classes, boxes dropped when reading, the
last validation's per-class AP).
"""

from __future__ import annotations

import logging
import time
from functools import partial

import numpy as np
import paddle
from paddle.optimizer.lr import LRScheduler

from ...config import get
from ...data.det_datasets import DetDataset, list_det_samples
from ...data.det_transforms import DetTransform
from ...data.loader_guard import MarkFailures, failure_of
from ...errors import DataError, ShuntedError
from ...factory import create_model
from ...models.retinanet import retina_loss
from ..train.loop import train
from ..train.optim import optimizer_from_section
from ..train.task import LoopSettings, Task, capped_steps, last_validation, shuffled_batches
from ..world import World
from .evaluate import collate, unreadable

TASK = "detection"
log = logging.getLogger(__name__)


def scaled_steps(step_epochs, base_epochs: int, epochs: int) -> list[int]:
    """The step epochs of a ``base_epochs`` schedule scaled to ``epochs`` (8 and 11 of 12 → 16 and 22 of 24)."""
    return [max(1, int(round(s * epochs / base_epochs))) for s in step_epochs]


def det_lr(
    it: int, epoch: int, peak: float, steps, gamma: float, warmup_iters: int, warmup_ratio: float
) -> float:
    """mmcv's ``StepLrUpdaterHook`` (by epoch: × gamma from each step epoch on) with its linear warm-up by
    iteration (``regular × (1 − (1 − it / warmup_iters)(1 − warmup_ratio))``)."""
    lr = peak * gamma ** sum(epoch >= s for s in steps)
    if warmup_iters and it < warmup_iters:
        lr *= 1.0 - (1.0 - it / warmup_iters) * (1.0 - warmup_ratio)
    return lr


class StepWarmupLR(LRScheduler):
    """``step(it)`` with the global iteration number sets ``det_lr`` of that iteration."""

    def __init__(
        self, peak: float, steps_per_epoch: int, steps, gamma: float, warmup_iters: int, warmup_ratio: float
    ):
        self.steps_per_epoch, self.steps, self.gamma = steps_per_epoch, list(steps), gamma
        self.warmup_iters, self.warmup_ratio = warmup_iters, warmup_ratio
        super().__init__(learning_rate=peak, last_epoch=-1)

    def get_lr(self) -> float:
        it = max(int(self.last_epoch), 0)
        epoch = it // max(self.steps_per_epoch, 1)
        return det_lr(it, epoch, self.base_lr, self.steps, self.gamma, self.warmup_iters, self.warmup_ratio)


def freeze_stages(backbone, n: int) -> list:
    """Stop the gradients of stages 1..n (patch embedding, blocks, norm); returns those sublayers."""
    frozen = []
    for i in range(1, n + 1):
        for name in (f"patch_embed{i}", f"block{i}", f"norm{i}"):
            layer = getattr(backbone, name)
            for p in layer.parameters():
                p.stop_gradient = True
            frozen.append(layer)
    return frozen


def enable_recompute(backbone) -> None:
    """Recompute every backbone block's activations in the backward pass instead of keeping them (training only;
    ``paddle.distributed.fleet.utils.recompute``, RNG state preserved so stochastic depth draws the same)."""
    from paddle.distributed.fleet.utils import recompute

    for i in range(1, backbone.num_stages + 1):
        for blk in getattr(backbone, f"block{i}"):
            forward = blk.forward

            def checkpointed(x, height, width, _forward=forward, _blk=blk):
                if _blk.training and not x.stop_gradient:
                    return recompute(_forward, x, height, width)
                return _forward(x, height, width)

            blk.forward = checkpointed


class DetectionTask(Task):
    name = TASK
    best = ("val_ap", "best_ap")
    curve = ("val_ap", "val AP", "COCO AP (%)")
    shown = (("val_ap", "AP"), ("val_ap50", "AP50"))

    def __init__(self, cfg: dict, world: World, settings: LoopSettings) -> None:
        super().__init__(cfg, world, settings)
        root = get(cfg, "DataLoader.Train.dataset.image_root")
        label_list = get(cfg, "DataLoader.Train.dataset.label_list")
        self.train_samples = list_det_samples(root, get(cfg, "DataLoader.Train.dataset.list"), label_list)
        val_list = get(cfg, "DataLoader.Eval.dataset.list")
        val_root = get(cfg, "DataLoader.Eval.dataset.image_root") or root
        self.val_samples = list_det_samples(val_root, val_list, label_list) if val_list else None
        self.class_names = list(self.train_samples.class_names)
        self.num_classes = len(self.class_names)
        given = get(cfg, "Arch.class_num")
        if given is not None and given != self.num_classes:
            raise DataError(
                f"Arch.class_num {given}: the data has {self.num_classes} classes ({', '.join(self.class_names)})"
            )
        if self.val_samples is not None and self.val_samples.class_names != self.class_names:
            raise DataError(
                f"{val_list}: classes {self.val_samples.class_names} differ from the training list's {self.class_names}"
            )
        if world.main:
            for samples in (self.train_samples, self.val_samples):
                note = samples.dropped_note() if samples is not None else None
                if note:
                    log.warning("%s", note)
        self.model = create_model(
            get(cfg, "Arch.name"),
            num_classes=len(self.class_names),
            backbone_pretrained=get(cfg, "Global.pretrained_model"),
            drop_path_rate=float(get(cfg, "Arch.drop_path_rate")),
        )
        self.frozen = freeze_stages(self.model.backbone, int(get(cfg, "Arch.freeze_stages")))
        if get(cfg, "Arch.recompute"):
            enable_recompute(self.model.backbone)
        self._build_data()
        self._build_optim()

    # -- setup ----------------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        pcfg = self.model.pretrained_cfg
        t = get(self.cfg, "DataLoader.Train.transform")
        self.img_scale = tuple(int(v) for v in t["img_scale"])
        transform = DetTransform(self.img_scale, float(t["hflip"]), tuple(pcfg.mean), tuple(pcfg.std))
        self.train_set = DetDataset(self.train_samples, transform, seed=self.settings.seed)
        self.batch_size = int(get(self.cfg, "DataLoader.Train.sampler.batch_size"))
        self.sampler = shuffled_batches(
            self.train_set, self.batch_size, self.world, f"--list {self.train_samples.source}"
        )
        self.workers = int(get(self.cfg, "DataLoader.Train.loader.num_workers"))
        self.loader = paddle.io.DataLoader(
            MarkFailures(self.train_set, unreadable), batch_sampler=self.sampler, num_workers=self.workers,
            collate_fn=partial(collate, targets=True),
        )  # fmt: skip
        self.steps_per_epoch = capped_steps(len(self.sampler), self.settings.max_steps)
        self.val_set = None
        if self.val_samples is not None:
            val_transform = DetTransform(self.img_scale, 0.0, tuple(pcfg.mean), tuple(pcfg.std))
            self.val_set = DetDataset(self.val_samples, val_transform)

    def _build_optim(self) -> None:
        opt = get(self.cfg, "Optimizer")
        lr = opt["lr"]
        self.peak_lr = float(lr["learning_rate"])
        self.steps = scaled_steps(lr["step_epochs"], int(lr["base_epochs"]), self.settings.epochs)
        self.scheduler = StepWarmupLR(
            self.peak_lr, self.steps_per_epoch, self.steps, float(lr["gamma"]), int(lr["warmup_iters"]),
            float(lr["warmup_ratio"]),
        )  # fmt: skip
        self.optimizer = optimizer_from_section(self.model, self.scheduler, opt)

    # -- one epoch --------------------------------------------------------------------------------------------
    def train_mode(self) -> None:
        self.model.train()
        for (
            layer
        ) in self.frozen:  # mmdet's frozen_stages: frozen parts stay in eval mode (no stochastic depth)
            layer.eval()

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(int(np.random.default_rng([self.settings.seed, epoch]).integers(0, 2**32 - 1)))
        self.train_set.set_epoch(epoch)

    def set_lr(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        self.scheduler.step(epoch * steps_per_epoch + step)

    def check_batch(self, batch) -> None:
        failed = batch[4]
        if len(failed):
            i = int(failed[0])
            raise failure_of(self.train_samples.images[i], partial(self.train_set.__getitem__, i))

    def batch_len(self, batch) -> int:
        return len(batch[1])

    def loss(self, net, batch, rng) -> paddle.Tensor:
        images, boxes, labels, pads, _ = batch
        x = images if isinstance(images, paddle.Tensor) else paddle.to_tensor(np.asarray(images, np.float32))
        losses = retina_loss(
            net(x),
            tuple(x.shape[2:]),
            [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes],
            [np.asarray(lab, np.int64) for lab in labels],
            [tuple(int(v) for v in p) for p in pads],
        )
        return losses["loss_cls"] + losses["loss_box"]

    # -- validation and records -------------------------------------------------------------------------------
    @paddle.no_grad()
    def validate(self) -> dict:
        """COCO AP of the validation list: the inference loop sharded over the processes, scored on rank 0 and
        broadcast (every rank gets the same row)."""
        if self.val_set is None:
            return {}
        from .evaluate import detect_dataset
        from .metrics import coco_metrics, ground_truth

        self.model.eval()
        start = time.perf_counter()

        def predict(x):
            return [o.numpy() for o in self.model(paddle.to_tensor(np.ascontiguousarray(x, np.float32)))]

        batch = int(get(self.cfg, "DataLoader.Eval.sampler.batch_size"))
        out = detect_dataset(predict, self.val_set, batch, self.workers, self.world, self.world.main)
        metrics = None
        if out is not None:
            metrics = coco_metrics(ground_truth(self.val_samples), out[0], self.val_samples)
        if self.world.size > 1:
            metrics = self.world.broadcast(metrics)
        self.last_metrics = metrics
        return {
            "val_ap": metrics["ap"],
            "val_ap50": metrics["ap50"],
            "val_ap75": metrics["ap75"],
            "val_seconds": round(time.perf_counter() - start, 3),
        }

    def check_resume(self, path, state: dict) -> None:
        super().check_resume(path, state)
        if state.get("class_names") != self.class_names:
            raise ShuntedError(
                f"{path}: trained classes {state.get('class_names')}, this data has {self.class_names}"
            )

    def state(self) -> dict:
        return {"num_classes": len(self.class_names), "class_names": self.class_names}

    def summary(self, rows: list[dict]) -> dict:
        metrics = getattr(self, "last_metrics", None) or {}
        return {
            **self.state(),
            "backbone_pretrained": get(self.cfg, "Global.pretrained_model"),
            "freeze_stages": int(get(self.cfg, "Arch.freeze_stages")),
            "recompute": bool(get(self.cfg, "Arch.recompute")),
            "lr_steps": self.steps,
            "train_data": self.train_samples.summary(),
            "val_data": self.val_samples.summary() if self.val_samples is not None else None,
            "last_val": last_validation(rows, ("val_ap", "val_ap50", "val_ap75")),
            "last_class_ap": metrics.get("class_ap"),
        }


def det_train(cfg: dict) -> dict:
    """Run (or resume) the detection training described by a resolved config; returns the per-epoch metrics."""
    return train(cfg, DetectionTask)
