"""What a training task supplies to the one training loop (``loop.py:Trainer``), and the loop's own settings.

The loop (epochs, resume, rank agreement, the non-finite stop, atomic saves, metrics files and plot, EMA, AMP,
VisualDL, the evaluation interval, the launcher, the task check on resume) knows nothing about a task. A task is
a subclass of :class:`Task` built from the resolved config and the ``World``; it owns:

- the model (``self.model``), its datasets, transforms and loader (``self.loader`` yields batches in whatever
  form the task's collate function makes: tensors, lists of variable-length boxes, ...);
- the optimiser and schedule (``self.optimizer``; ``set_lr(epoch, step)`` is called before every step and may
  step the schedule by epoch, by iteration, with a warm-up, ...); gradient clipping is ``Optimizer.grad_clip``
  (global norm), applied by the optimiser that ``optim.optimizer_from_section`` builds;
- the loss of one step (``loss(net, batch, rng)``) and the checks of a batch (``check_batch``);
- the validation metric (``validate()`` → row entries, summed over the processes) and which of them is "best"
  (``best = (row key, checkpoint/summary key)``, maximised);
- its records: ``state()`` / ``summary(rows)`` entries, ``run_files()`` (JSON files for the run folder) and
  ``check_resume`` (default: the same ``num_classes``).

docs/architecture.md "Adding a task" has the table.

Pure Python: importing this module does not import Paddle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...config import get
from ...errors import DataError, ShuntedError

if TYPE_CHECKING:
    import numpy as np
    import paddle

    from ..world import World


@dataclass(frozen=True)
class LoopSettings:
    """The task-independent keys of a resolved training config (``Global.*``, ``EMA.*``)."""

    output_dir: Path
    seed: int
    epochs: int
    max_steps: int | None = None  # per epoch (smoke tests)
    eval_interval: int = 1  # validate every N epochs; the last epoch always
    resume: bool = False
    amp: str | None = None  # bf16 | fp16
    use_visualdl: bool = False
    ema_decay: float | None = None  # None: no EMA

    @classmethod
    def from_config(cls, cfg: dict) -> LoopSettings:
        ema = bool(get(cfg, "EMA.enabled", False))
        max_steps = get(cfg, "Global.max_steps_per_epoch", None)
        return cls(
            output_dir=Path(get(cfg, "Global.output_dir")),
            seed=int(get(cfg, "Global.seed")),
            epochs=int(get(cfg, "Global.epochs")),
            max_steps=int(max_steps) if max_steps else None,
            eval_interval=int(get(cfg, "Global.eval_interval", 1) or 1),
            resume=bool(get(cfg, "Global.resume", False)),
            amp=get(cfg, "Global.amp", None),
            use_visualdl=bool(get(cfg, "Global.use_visualdl", False)),
            ema_decay=float(get(cfg, "EMA.decay")) if ema else None,
        )


class Task:
    """The interface between the training loop and one task (classification, segmentation, detection, ...).

    Subclasses set the class attributes and, in ``__init__(cfg, world, settings)``, the instance attributes
    below; every check of the data happens there, before the loop opens the run folder."""

    name: ClassVar[str]  # "classification": the checkpoint's and summary.json's "task"
    best: ClassVar[
        tuple[str, str]
    ]  # (row key to maximise, its checkpoint/summary key), e.g. val_top1, best_top1
    curve: ClassVar[tuple[str, str, str]]  # metrics.png's second panel: (row key, legend, axis label)
    # the epoch line's validation part: (row key, label) pairs, "val top-1 81.20 % top-5 95.10 %"
    shown: ClassVar[tuple[tuple[str, str], ...]] = ()

    model: paddle.nn.Layer
    optimizer: paddle.optimizer.Optimizer
    loader: Any  # iterable of batches
    steps_per_epoch: int  # before Global.max_steps_per_epoch
    peak_lr: float

    def __init__(self, cfg: dict, world: World, settings: LoopSettings) -> None:
        self.cfg, self.world, self.settings = cfg, world, settings

    # -- one epoch --------------------------------------------------------------------------------------------
    def train_mode(self) -> None:
        """Put the model in its training mode (frozen or fine-tuned parts may stay in eval mode)."""
        self.model.train()

    def set_epoch(self, epoch: int) -> None:
        """Seed the sampler's order and the augmentation for epoch ``epoch`` (0-based; resume depends on it)."""

    def set_lr(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        """Set the learning rate step ``step`` of epoch ``epoch`` trains at (called before every step)."""

    def check_batch(self, batch: Any) -> None:
        """Raise the one-line DataError for a sample the loader could not read or a label that is no class."""

    def batch_len(self, batch: Any) -> int:
        """Images in ``batch`` (for the mean loss and images/s)."""
        return int(batch[0].shape[0])

    def loss(self, net: paddle.nn.Layer, batch: Any, rng: np.random.Generator) -> paddle.Tensor:
        """The scalar loss of one step (``net``: the model, or its DataParallel wrapper); ``rng`` is seeded per
        (seed, epoch, rank) for the task's own randomness (Mixup)."""
        raise NotImplementedError

    # -- validation and records -------------------------------------------------------------------------------
    def validate(self) -> dict:
        """Row entries (``val_*``) of one validation pass, summed over the processes; {} without validation data."""
        return {}

    def describe(self, row: dict) -> str | None:
        """The validation part of the epoch's line, ``shown`` (None: the row has no validation)."""
        if not self.shown or row.get(self.shown[0][0]) is None:
            return None
        return "val " + " ".join(f"{label} {row[key]:.2f} %" for key, label in self.shown)

    def check_resume(self, path: Path, state: dict) -> None:
        """ShuntedError if checkpoint ``path`` (its ``state``) cannot continue this task's run (by default: a
        different ``num_classes``)."""
        n = getattr(self, "num_classes", None)
        if n is not None and state.get("num_classes") != n:
            raise ShuntedError(
                f"{path}: trained {state.get('num_classes')} classes, this run has {n} (--num-classes)"
            )

    def run_files(self) -> dict:
        """File name → JSON value the loop writes (atomically) into the run folder once it is opened."""
        return {}

    def state(self) -> dict:
        """Task entries of ``last.pdckpt`` (number of classes, class names, ...)."""
        return {}

    def summary(self, rows: list[dict]) -> dict:
        """Task entries of ``summary.json`` (``rows``: the metrics rows so far)."""
        return {}


def shuffled_batches(dataset: Any, batch_size: int, world: World, what: str) -> Any:
    """Paddle's DistributedBatchSampler (shuffled, full batches, this process's share); a DataError naming
    ``what`` (the data's flag and source) when the data gives no full step."""
    import paddle

    sampler = paddle.io.DistributedBatchSampler(
        dataset, batch_size=batch_size, num_replicas=world.size, rank=world.rank, shuffle=True, drop_last=True
    )
    check_steps(sampler, len(dataset), batch_size, world, what)
    return sampler


def check_steps(sampler: Any, n: int, batch_size: int, world: World, what: str) -> None:
    if len(sampler) == 0:
        raise DataError(
            f"{what}: {n} images give no full step of {batch_size} x {world.size} processes (lower --batch-size)"
        )


def last_validation(rows: list[dict], keys: tuple[str, ...]) -> dict | None:
    """``epoch`` and ``keys`` of the last metrics row with a validation (``keys[0]`` set), or None (for
    ``Task.summary``)."""
    last = next((r for r in reversed(rows) if r.get(keys[0]) is not None), None)
    return None if last is None else {k: last[k] for k in ("epoch", *keys)}


def capped_steps(steps: int, max_steps: int | None) -> int:
    """The steps of an epoch: the sampler's, or ``Global.max_steps_per_epoch`` if fewer."""
    return min(steps, max_steps) if max_steps else steps
