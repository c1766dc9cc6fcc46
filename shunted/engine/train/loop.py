"""The training loop: one process or many (``paddle.distributed.launch``), resumable at every epoch.

Reproducibility: data order comes from a DistributedBatchSampler shuffled by (seed, epoch); augmentation from a
Generator per (seed, epoch, sample); Mixup/CutMix and stochastic depth from generators seeded by
(seed, epoch, rank) at the start of each epoch. A run resumed from ``last.pdckpt`` after epoch e therefore
trains epoch e + 1 exactly as an uninterrupted run would (bit-identical on the same machine and thread count).

Only rank 0 writes files; losses and accuracies are all-reduced; at the end of every epoch the ranks compare a
hash of their weights and stop if they differ. A non-finite loss stops the run (ShuntedError) before anything is
written, so ``last.pdckpt`` stays the last good epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm

from ...config import ConfigError, eval_settings, get
from ...data.datasets import BAD_LABEL, ImageDataset, Samples, list_samples, marked_sample
from ...data.loader_guard import MarkFailures, failure_of
from ...data.mixup import Mixup, soft_target_cross_entropy
from ...data.train_transforms import SeededImageDataset, TrainTransform
from ...data.transforms import EvalTransform
from ...errors import DataError, ShuntedError
from ...factory import create_model
from ...fileio import write_json_atomic
from ..world import World, init_world
from . import state as ts
from .config import resolve_config, section
from .ema import ModelEMA
from .optim import WarmupCosineLR, optimizer_from_section, scaled_lr, schedule_t
from .sampler import RepeatedAugBatchSampler

log = logging.getLogger(__name__)
# Paddle's BatchNorm says this on every training forward; it describes the intended behaviour.
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")


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


def weights_digest(model: paddle.nn.Layer) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(value.numpy()).tobytes())
    return h.hexdigest()


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed Paddle's generator (dropout, stochastic depth) for this epoch and process."""
    paddle.seed(int(np.random.default_rng([seed, epoch, rank, 7]).integers(0, 2**31 - 1)))


@dataclass
class Trainer:
    cfg: dict
    world: World = field(default_factory=World)

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.run_dir = Path(get(cfg, "Global.output_dir"))
        self.seed = int(get(cfg, "Global.seed"))
        self.epochs = int(get(cfg, "Global.epochs"))
        self.max_steps = get(cfg, "Global.max_steps_per_epoch")
        paddle.seed(self.seed)
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
        ema = section(cfg, "EMA")
        self.ema = ModelEMA(self.model, ema["decay"]) if ema.get("enabled") else None
        self.amp = get(cfg, "Global.amp")
        if self.amp and paddle.device.get_device().startswith("cpu") and self.world.main:
            log.warning(
                "--amp %s: Paddle runs CPU training in float32; mixed precision needs a GPU", self.amp
            )
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**16) if self.amp == "fp16" else None
        self.net = paddle.DataParallel(self.model) if self.world.size > 1 else self.model
        self.start_epoch, self.best_top1, self.best_epoch, self.rows = 0, None, None, []

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
        self.train_set = SeededImageDataset(self.train_samples, self.transform, self.seed)
        self.batch_size = int(train["sampler"]["batch_size"])
        repeats = int(train["sampler"]["repeated_aug"])
        if repeats > 1:
            self.sampler = RepeatedAugBatchSampler(
                len(self.train_set), self.batch_size, repeats, self.world.size, self.world.rank, self.seed
            )
        else:
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
                f"--data: {len(self.train_samples)} images give no full step of {self.batch_size} x "
                f"{self.world.size} processes (lower --batch-size)"
            )
        self.workers = int(train["loader"]["num_workers"])
        self.loader = paddle.io.DataLoader(  # a bad image stops the run in one line (_stop_on_bad_images)
            MarkFailures(self.train_set, marked_sample(self.train_set)),
            batch_sampler=self.sampler,
            num_workers=self.workers,
            return_list=True,
        )
        self.steps_per_epoch = len(self.sampler)
        if self.max_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, int(self.max_steps))
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
        dataset = ImageDataset(samples, transform)
        self.val_set = dataset
        shard = paddle.io.Subset(
            MarkFailures(dataset, marked_sample(dataset)),
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
            self.epochs,
            float(lr["warmup_epoch"]),
            float(lr["warmup_start_lr"]),
            float(lr["eta_min"]),
        )
        self.optimizer = optimizer_from_section(self.model, self.scheduler, opt)

    # -- state ----------------------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        return {
            **ts.run_state(epoch, self.model, self.optimizer, self.cfg, self.rows),
            "ema": ts.to_numpy(self.ema.state) if self.ema else None,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "num_classes": self.num_classes,
            "classes": list(self.train_samples.classes),
        }

    def resume(self) -> None:
        path = self.run_dir / ts.CHECKPOINT
        state = ts.load_checkpoint(path)
        if state.get("num_classes") != self.num_classes:
            raise ShuntedError(
                f"{path}: trained {state.get('num_classes')} classes, this run has {self.num_classes}"
            )
        ts.restore_run_state(path, state, self.model, self.optimizer)
        if self.ema and state.get("ema"):
            self.ema.load(state["ema"])
        self.start_epoch = int(state["epoch"])
        self.best_top1, self.best_epoch = state.get("best_top1"), state.get("best_epoch")
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
        self.saved_epoch = self.start_epoch  # what last.pdckpt holds (0: no checkpoint yet)
        if self.world.main:
            for orphan in ts.open_run_dir(self.run_dir, self.cfg):  # left by a process killed mid-write
                log.info("removed %s, a partial write of an interrupted run", orphan)
        writer = self._visualdl()
        for epoch in range(self.start_epoch, self.epochs):
            row = self.train_epoch(epoch)
            self.world.broadcast_buffers(self.model)
            row.update(self.validate())
            digest, per_rank = self.check_ranks_agree()
            top1 = row.get("val_top1")
            improved = top1 is not None and (self.best_top1 is None or top1 > self.best_top1)
            if improved:
                self.best_top1, self.best_epoch = top1, epoch + 1
            self.rows.append(row)
            if self.world.main:
                self.save(epoch + 1, improved, digest, per_rank)
                if writer is not None:
                    for key, value in row.items():
                        if key != "epoch" and value is not None:
                            writer.add_scalar(f"train/{key}", value, epoch + 1)
            if self.world.main:
                tqdm.write(_summary(row, self.epochs))
        return {
            "epochs": self.epochs,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "rows": self.rows,
        }

    def train_epoch(self, epoch: int) -> dict:
        if self.finetune_eval_mode:
            self.model.eval()
        else:
            self.model.train()
            for layer in self.frozen:
                layer.eval()
        seed_epoch(self.seed, epoch, self.world.rank)
        epoch_lr = self._set_lr(epoch, 0)  # the official stepping: see optim.schedule_t
        if isinstance(self.sampler, RepeatedAugBatchSampler):
            self.sampler.set_epoch(epoch)
        else:  # Paddle's sampler shuffles with RandomState(epoch): fold the seed in
            self.sampler.set_epoch(int(np.random.default_rng([self.seed, epoch]).integers(0, 2**32 - 1)))
        self.train_set.set_epoch(epoch)
        rng = np.random.default_rng([self.seed, epoch, self.world.rank, 1])
        loss_sum, seen, start = 0.0, 0, time.perf_counter()
        bar = tqdm(
            total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}", disable=not self.world.main
        )
        for step, (x, y, index) in enumerate(self.loader):
            if step >= self.steps_per_epoch:
                break
            try:
                _stop_on_bad_images(self.train_set, y, index)
            except DataError:
                bar.close()
                raise
            if not self.by_epoch and step > 0:
                self._set_lr(epoch, step)
            loss = self.train_step(x, y, rng)
            if not math.isfinite(loss):
                bar.close()
                raise self._non_finite_stop(f"loss is {loss} at epoch {epoch + 1} step {step + 1}")
            loss_sum += loss * x.shape[0]
            seen += x.shape[0]
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.4f}",
                lr=f"{self.optimizer.get_lr():.3g}",
                img_s=f"{seen * self.world.size / (time.perf_counter() - start):.1f}",
            )
        bar.close()
        # the last step's update shows in no loss: check the weights (every rank, so all of them stop together)
        bad = self._non_finite_state()
        if bad:
            raise self._non_finite_stop(f"weights not finite after epoch {epoch + 1} ({_first(bad)})")
        seconds = time.perf_counter() - start
        total_loss, total_seen = self.world.sum([loss_sum, float(seen)])
        return {
            "epoch": epoch + 1,
            "lr": epoch_lr,  # the rate the epoch trained at (per-step schedule: at its first step)
            "train_loss": total_loss / max(total_seen, 1),
            "images": int(total_seen),
            "seconds": round(seconds, 3),
            "img_per_s": round(total_seen / seconds, 2) if seconds > 0 else None,
        }

    def _set_lr(self, epoch: int, step: int) -> float:
        self.scheduler.step(schedule_t(epoch, step, self.steps_per_epoch, self.by_epoch))
        return float(self.optimizer.get_lr())

    def train_step(self, x: paddle.Tensor, y: paddle.Tensor, rng: np.random.Generator) -> float:
        x, target = self.mixup(x, y, rng)
        with self._autocast():
            loss = soft_target_cross_entropy(self.net(x), target)
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
            top5 = paddle.topk(logits, k=min(5, self.num_classes), axis=1)[1]
            hits = (top5 == y.unsqueeze(1)).astype("float32")
            correct1 += float(hits[:, 0].sum())
            correct5 += float(hits.sum())
            count += y.shape[0]
        loss_sum, correct1, correct5, count = self.world.sum([loss_sum, correct1, correct5, count])
        return {
            "val_loss": loss_sum / count,
            "val_top1": 100.0 * correct1 / count,
            "val_top5": 100.0 * correct5 / count,
        }

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
        kept = getattr(self, "saved_epoch", self.start_epoch)
        where = self.run_dir / ts.CHECKPOINT
        kept_text = f"{where} keeps epoch {kept}, the last good one" if kept else "no checkpoint was written"
        return ShuntedError(f"{what}: stopped; {kept_text} — lower --lr or enable Optimizer.grad_clip")

    def save(self, epoch: int, improved: bool, digest: str, per_rank: list[str]) -> None:
        state = self.state(epoch)
        bad = ts.non_finite(state)  # before anything is written: no file under any name is ever non-finite
        if bad:
            raise self._non_finite_stop(f"weights not finite at the end of epoch {epoch} ({_first(bad)})")
        ts.save_weights(self.run_dir / "last.pdparams", state["model"])
        if improved:
            ts.save_weights(self.run_dir / "best.pdparams", state["model"])
        if self.ema is not None:
            ts.save_weights(self.run_dir / "ema.pdparams", state["ema"])
        ts.write_metrics(self.run_dir, self.rows)
        write_json_atomic(
            self.run_dir / "summary.json",
            {
                "model": get(self.cfg, "Arch.name"),
                "num_classes": self.num_classes,
                "classes": list(self.train_samples.classes),
                "epochs_done": epoch,
                "epochs": self.epochs,
                "best_top1": self.best_top1,
                "best_epoch": self.best_epoch,
                "world_size": self.world.size,
                "weights_sha256": digest,
                "weights_sha256_per_rank": per_rank,  # first 128 bits, gathered from every process each epoch
                "peak_lr": self.peak_lr,
            },
        )
        ts.save_checkpoint(self.run_dir / ts.CHECKPOINT, state)  # last: its presence marks a complete epoch
        self.saved_epoch = epoch

    def _visualdl(self):
        if not (self.world.main and get(self.cfg, "Global.use_visualdl", False)):
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


def infer_num_classes(samples: Samples) -> int:
    return len(samples.classes) if samples.classes else max(samples.labels) + 1


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
    resume changes (``Global.resume``, ``Global.output_dir``); ``train`` and ``seg-train`` warn of them."""
    return sorted(_diff(saved or {}, cfg, ignore={"Global.resume", "Global.output_dir"}))


def _summary(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}", f"lr {row['lr']:.3g}"]
    if row.get("val_top1") is not None:
        parts.append(f"val top-1 {row['val_top1']:.2f} % top-5 {row['val_top5']:.2f} %")
    parts.append(f"{row['img_per_s']} img/s")
    return " | ".join(parts)


def train(cfg: dict) -> dict:
    """Run (or resume) the training described by a resolved config; returns the per-epoch metrics."""
    world = init_world()
    return Trainer(cfg, world).fit()


def train_from_args(args: argparse.Namespace) -> dict:
    return train(resolve_config(args))
