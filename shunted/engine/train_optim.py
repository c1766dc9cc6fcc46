"""Optimiser and learning-rate schedule of the official recipe, on Paddle's AdamW and LRScheduler.

Schedule (timm ``CosineLRScheduler`` as DeiT creates it, ``t_in_epochs=True``): for epoch t (a float when updated
per step), lr(t) = warmup_lr + t · (peak − warmup_lr) / warmup_epochs while t < warmup_epochs, else
min_lr + ½ (peak − min_lr)(1 + cos(π t / epochs)). The cosine is not shifted by the warm-up (timm's
``warmup_prefix=False``), so at t = warmup_epochs it is already slightly below the peak.
We set epoch e's rate to lr(e) before the epoch runs. (DeiT's loop calls ``scheduler.step(e)`` *after* epoch e,
so there epoch e ≥ 1 runs at lr(e − 1) and epochs 0 and 1 both at warmup_lr — one epoch of lag in 300.)
Paddle's LinearWarmup + CosineAnnealingDecay cannot express this (its cosine restarts after the warm-up), hence
the small subclass. Its state (``last_epoch``) travels in the optimiser's state dict.
"""

from __future__ import annotations

import math

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


class WarmupCosineLR(LRScheduler):
    """``step(t)`` sets the rate for (fractional) epoch t; ``step()`` advances one epoch."""

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
