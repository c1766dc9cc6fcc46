"""Classification as a task of the training loop (``shunted train``): the official (DeiT-style) recipe.

Data (``data/datasets.py``, ``data/train_transforms.py`` seeded per sample, ``sampler.py`` repeated
augmentation), Mixup/CutMix with soft-target cross-entropy (``data/mixup.py``), AdamW with the warm-up + cosine
schedule stepped as the official ``main.py`` (``optim.py``); validation top-1/top-5 counted as ``shunted eval``
counts them (``engine/evaluate.py:topk_correct``: ties broken in the label's favour).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F

from ...config import ConfigError, eval_settings, get
from ...data.datasets import BAD_LABEL, ImageDataset, Samples, list_samples, marked_sample
from ...data.loader_guard import MarkFailures, failure_of
from ...data.mixup import Mixup, soft_target_cross_entropy
from ...data.train_transforms import SeededImageDataset, TrainTransform
from ...data.transforms import EvalTransform
from ...errors import DataError
from ...factory import create_model
from ..evaluate import topk_correct
from .config import section
from .optim import WarmupCosineLR, optimizer_from_section, scaled_lr, schedule_t
from .sampler import RepeatedAugBatchSampler
from .task import Task, capped_steps, check_steps, shuffled_batches


def freeze_stages(model: paddle.nn.Layer, n: int) -> list[paddle.nn.Layer]:
    """Stop gradients of stages 1..n (embedding, blocks, norm); returns those layers (kept in eval mode)."""
    frozen = []
    for i in range(1, n + 1):
        for name in (f"patch_embed{i}", f"block{i}", f"norm{i}"):
            layer = getattr(model, name)
            for p in layer.parameters():
                p.stop_gradient = True
            frozen.append(layer)
    return frozen


def _stop_on_bad_images(dataset: ImageDataset, labels: paddle.Tensor, index: paddle.Tensor) -> None:
    """A sample the loader marked as unreadable (``MarkFailures``) stops the run with its one-line error."""
    bad = labels.numpy() == BAD_LABEL
    if bad.any():
        i = int(index.numpy()[bad][0])
        raise failure_of(dataset.samples.paths[i], lambda: dataset.load(i))


def infer_num_classes(samples: Samples) -> int:
    return len(samples.classes) if samples.classes else max(samples.labels) + 1


class ClassificationTask(Task):
    name = "classification"
    best = ("val_top1", "best_top1")
    curve = ("val_top1", "val top-1", "top-1 (%)")
    shown = (("val_top1", "top-1"), ("val_top5", "top-5"))

    def __init__(self, cfg, world, settings) -> None:
        super().__init__(cfg, world, settings)
        self.train_samples = list_samples(
            get(cfg, "DataLoader.Train.dataset.image_root"),
            get(cfg, "DataLoader.Train.dataset.cls_label_path"),
        )
        self.num_classes = get(cfg, "Arch.class_num") or infer_num_classes(self.train_samples)
        if get(cfg, "Arch.class_num") and self.num_classes < 2:  # from data: _check_two_classes names it
            raise DataError(
                f"--num-classes / Arch.class_num {self.num_classes}: a single class cannot be trained "
                "(a classifier needs at least two classes)"
            )
        self._check_labels(self.train_samples, "--data")
        self._check_two_classes(self.train_samples)
        arch = section(cfg, "Arch")
        self.model = create_model(
            arch["name"],
            pretrained=get(cfg, "Global.pretrained_model"),
            num_classes=self.num_classes,
            drop_path_rate=arch.get("drop_path_rate") or 0.0,
            drop_rate=arch.get("drop_rate") or 0.0,
        )
        self.frozen = freeze_stages(self.model, int(arch.get("freeze_stages") or 0))
        self.finetune_eval_mode = bool(get(cfg, "Global.pretrained_model") and arch.get("finetune_eval_mode"))
        self._build_data()
        self._build_optim()

    # -- setup ----------------------------------------------------------------------------------------------
    def _check_labels(self, samples: Samples, flag: str) -> None:
        bad = [lab for lab in samples.labels if not 0 <= lab < self.num_classes]
        if bad:
            raise DataError(f"{flag}: label {bad[0]} out of range for {self.num_classes} classes")

    def _check_two_classes(self, samples: Samples) -> None:
        present = sorted(set(samples.labels))
        if len(present) < 2 or self.num_classes < 2:
            what = f"class folder {samples.classes[0]!r}" if samples.classes else f"label {present[0]}"
            raise DataError(
                f"--data {samples.root}: one class only ({what}); a classifier needs at least two classes"
            )

    def _build_data(self) -> None:
        train = section(self.cfg, "DataLoader.Train")
        t = dict(train["transform"])
        pcfg = self.model.pretrained_cfg
        for k in ("scale", "ratio"):
            t[k] = tuple(t[k])
        # mean and std come with the model (registry), not from the config
        unknown = sorted((set(t) - set(TrainTransform.__dataclass_fields__)) | ({"mean", "std"} & set(t)))
        if unknown:
            raise ConfigError(f"DataLoader.Train.transform: unknown key(s) {', '.join(unknown)}")
        try:
            self.transform = TrainTransform(**t, mean=tuple(pcfg.mean), std=tuple(pcfg.std))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"DataLoader.Train.transform: {exc}") from None
        seed, world = self.settings.seed, self.world
        self.train_set = SeededImageDataset(self.train_samples, self.transform, seed)
        self.batch_size = int(train["sampler"]["batch_size"])
        repeats = int(train["sampler"]["repeated_aug"])
        if repeats > 1:
            self.sampler = RepeatedAugBatchSampler(
                len(self.train_set), self.batch_size, repeats, world.size, world.rank, seed
            )
            check_steps(self.sampler, len(self.train_set), self.batch_size, world, "--data")
        else:
            self.sampler = shuffled_batches(self.train_set, self.batch_size, world, "--data")
        self.workers = int(train["loader"]["num_workers"])
        self.loader = paddle.io.DataLoader(  # a bad image stops the run in one line (check_batch)
            MarkFailures(self.train_set, marked_sample(self.train_set)),
            batch_sampler=self.sampler,
            num_workers=self.workers,
            return_list=True,
        )
        self.steps_per_epoch = capped_steps(len(self.sampler), self.settings.max_steps)
        mix = section(self.cfg, "DataLoader.Train.mixup")
        try:
            self.mixup = Mixup(
                self.num_classes, label_smoothing=float(get(self.cfg, "Loss.label_smoothing")), **mix
            )
        except TypeError as exc:
            raise ConfigError(f"DataLoader.Train.mixup: {exc}") from None
        self.val_loader = self._build_val()

    def _build_val(self):
        ev = eval_settings(self.cfg)  # the keys shunted eval reads (DataLoader.Eval.dataset/sampler/loader)
        self.val_set = None
        if not ev.get("data"):
            return None
        train = self.train_samples  # validation folders map to the training classes by name
        samples = list_samples(
            ev["data"],
            ev.get("labels"),
            num_classes=self.num_classes,
            class_names=train.classes or None,
            names_source=f"the class folders of --data {train.root}",
            hint="give --val-data the class folders of --data, or --val-labels FILE",
        )
        self._check_labels(samples, "--val-data")
        pcfg = self.model.pretrained_cfg
        for key in ("mean", "std"):  # normalisation comes with the model
            if key in ev and ev[key] != tuple(getattr(pcfg, key)):
                raise ConfigError(
                    f"NormalizeImage.{key} {list(ev[key])} differs from the model's {getattr(pcfg, key)}"
                )
        transform = EvalTransform.from_config(
            pcfg,
            img_size=ev.get("img_size") or self.transform.img_size,
            resize_short=ev.get("resize_short"),
            interpolation=ev.get("interpolation"),
        )
        self.val_set = ImageDataset(samples, transform)
        shard = paddle.io.Subset(
            MarkFailures(self.val_set, marked_sample(self.val_set)),
            list(range(self.world.rank, len(samples), self.world.size)),
        )
        return paddle.io.DataLoader(
            shard,
            batch_size=int(ev.get("batch_size", self.batch_size)),
            shuffle=False,
            num_workers=int(ev.get("workers", self.workers)),
        )

    def _build_optim(self) -> None:
        opt = section(self.cfg, "Optimizer")
        lr = dict(opt["lr"])
        peak = lr.get("learning_rate") or scaled_lr(
            float(lr["base_lr"]), self.batch_size * self.world.size, int(lr["base_batch"])
        )
        self.peak_lr = float(peak)
        self.by_epoch = bool(lr.get("by_epoch", True))
        self.scheduler = WarmupCosineLR(
            self.peak_lr,
            self.settings.epochs,
            float(lr["warmup_epoch"]),
            float(lr["warmup_start_lr"]),
            float(lr["eta_min"]),
        )
        self.optimizer = optimizer_from_section(self.model, self.scheduler, opt)

    # -- one epoch --------------------------------------------------------------------------------------------
    def train_mode(self) -> None:
        if self.finetune_eval_mode:
            self.model.eval()
        else:
            self.model.train()
            for layer in self.frozen:
                layer.eval()

    def set_epoch(self, epoch: int) -> None:
        seed = self.settings.seed
        if isinstance(self.sampler, RepeatedAugBatchSampler):
            self.sampler.set_epoch(epoch)
        else:  # Paddle's sampler shuffles with RandomState(epoch): fold the seed in
            self.sampler.set_epoch(int(np.random.default_rng([seed, epoch]).integers(0, 2**32 - 1)))
        self.train_set.set_epoch(epoch)

    def set_lr(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        # the official stepping (optim.schedule_t): one position per epoch, or one per step (by_epoch false)
        self.scheduler.step(schedule_t(epoch, step, steps_per_epoch, self.by_epoch))

    def check_batch(self, batch: Any) -> None:
        _stop_on_bad_images(self.train_set, batch[1], batch[2])

    def loss(self, net, batch, rng) -> paddle.Tensor:
        x, target = self.mixup(batch[0], batch[1], rng)
        return soft_target_cross_entropy(net(x), target)

    # -- validation and records -------------------------------------------------------------------------------
    @paddle.no_grad()
    def validate(self) -> dict:
        if self.val_loader is None:
            return {}
        self.model.eval()
        loss_sum = correct1 = correct5 = count = 0.0
        for x, y, index in self.val_loader:
            _stop_on_bad_images(self.val_set, y, index)
            logits = self.model(x).astype("float32")
            y = y.astype("int64")
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            scores, labels = logits.numpy(), y.numpy()
            correct1 += float(topk_correct(scores, labels, 1).sum())
            correct5 += float(topk_correct(scores, labels, 5).sum())
            count += y.shape[0]
        loss_sum, correct1, correct5, count = self.world.sum([loss_sum, correct1, correct5, count])
        return {
            "val_loss": loss_sum / count,
            "val_top1": 100.0 * correct1 / count,
            "val_top5": 100.0 * correct5 / count,
        }

    def state(self) -> dict:
        return {"num_classes": self.num_classes, "classes": list(self.train_samples.classes)}

    def summary(self, rows: list[dict]) -> dict:
        return self.state()
