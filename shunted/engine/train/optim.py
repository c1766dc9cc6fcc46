"""Optimiser and learning-rate schedule of the official recipe, on Paddle's AdamW and LRScheduler.

Schedule (timm ``CosineLRScheduler`` as DeiT's ``create_scheduler`` builds it, ``t_in_epochs=True``,
``warmup_prefix=False``, ``cycle_limit=1``): for epoch t,
lr(t) = warmup_lr + t · (peak − warmup_lr) / warmup_epochs while t < warmup_epochs, else
min_lr + ½ (peak − min_lr)(1 + cos(π t / epochs)), and min_lr from t = epochs on. The cosine is not shifted by the
warm-up, so at t = warmup_epochs it is already slightly below the peak.

Stepping (the official ``main.py``): the scheduler starts at lr(0) (= warmup_lr, or the peak without warm-up) and
``lr_scheduler.step(epoch)`` is called *after* epoch ``epoch``. Epoch e (0-based) therefore trains at
lr(max(e − 1, 0)): epochs 0 and 1 both at lr(0), epoch 2 at lr(1), … — :func:`schedule_t` says which t an epoch
uses. It depends on the epoch number alone, so a run resumed at any epoch gets the same rates.
``by_epoch=False`` (``Optimizer.lr.by_epoch``, an explicit option, not the official recipe) updates the rate
before every step instead, at t = epoch + step / steps_per_epoch (timm's per-update stepping: update k trains at
the rate for k updates).

Paddle's LinearWarmup + CosineAnnealingDecay cannot express this (its cosine restarts after the warm-up), hence
the small subclass. Weight decay follows timm's ``add_weight_decay``: none on 1-D parameters (biases, norms) and
on ``model.no_weight_decay()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import paddle
from paddle.optimizer.lr import LRScheduler


def warmup_cosine_lr(
    t: float,
    peak: float,
    epochs: float,
    warmup_epochs: float = 5,
    warmup_lr: float = 1e-6,
    min_lr: float = 1e-5,
) -> float:
    if t < warmup_epochs:
        return warmup_lr + t * (peak - warmup_lr) / warmup_epochs
    if t >= epochs:
        return min_lr
    return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * t / epochs))


def schedule_t(epoch: int, step: int = 0, steps_per_epoch: int = 1, by_epoch: bool = True) -> float:
    """The schedule position t whose rate step ``step`` of epoch ``epoch`` (both 0-based) trains at.

    ``by_epoch`` (official): max(epoch − 1, 0) for every step of the epoch; else epoch + step / steps_per_epoch.
    """
    if by_epoch:
        return float(max(epoch - 1, 0))
    return epoch + step / steps_per_epoch


class WarmupCosineLR(LRScheduler):
    """``step(t)`` sets the rate lr(t) for (fractional) position t; ``step()`` advances t by one.

    The trainer calls ``step(schedule_t(epoch, step, ...))``, never the argument-less form."""

    def __init__(
        self,
        peak_lr: float,
        epochs: float,
        warmup_epochs: float = 5,
        warmup_lr: float = 1e-6,
        min_lr: float = 1e-5,
        last_epoch: int = -1,
    ) -> None:
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.warmup_lr = warmup_lr
        self.min_lr = min_lr
        super().__init__(learning_rate=peak_lr, last_epoch=last_epoch)

    def get_lr(self) -> float:
        t = max(float(self.last_epoch), 0.0)
        return warmup_cosine_lr(t, self.base_lr, self.epochs, self.warmup_epochs, self.warmup_lr, self.min_lr)


def scaled_lr(base_lr: float, total_batch: int, reference_batch: int = 512) -> float:
    """The recipe's linear scaling: base_lr · total_batch / reference_batch."""
    return base_lr * total_batch / reference_batch


def decay_param_names(model: paddle.nn.Layer, trainable: list[paddle.Tensor] | None = None) -> set[str]:
    """Paddle names (``param.name``) of the parameters that get weight decay: all but ``model.no_weight_decay()``."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    return {p.name for n, p in model.named_parameters() if n not in skip and p.ndim > 1}


def build_optimizer(
    model: paddle.nn.Layer,
    lr: LRScheduler | float,
    weight_decay: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    grad_clip: float | None = None,
) -> paddle.optimizer.AdamW:
    """AdamW over the trainable parameters; no decay on biases and norms; optional global-norm clipping."""
    params = [p for p in model.parameters() if not p.stop_gradient]
    decay = decay_param_names(model)
    return paddle.optimizer.AdamW(
        learning_rate=lr,
        beta1=betas[0],
        beta2=betas[1],
        epsilon=eps,
        parameters=params,
        weight_decay=weight_decay,
        apply_decay_param_fun=lambda name: name in decay,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(grad_clip) if grad_clip else None,
    )


def optimizer_from_section(
    model: paddle.nn.Layer, lr: LRScheduler | float, opt: Mapping[str, Any]
) -> paddle.optimizer.AdamW:
    """``build_optimizer`` with an ``Optimizer`` config section's ``weight_decay``, ``beta1``, ``beta2``,
    ``epsilon`` and ``grad_clip`` (``shunted train``'s and ``shunted seg-train``'s share these keys)."""
    return build_optimizer(
        model,
        lr,
        weight_decay=float(opt["weight_decay"]),
        betas=(float(opt["beta1"]), float(opt["beta2"])),
        eps=float(opt["epsilon"]),
        grad_clip=opt.get("grad_clip"),
    )
