"""Mixup / CutMix with label smoothing — timm's ``Mixup`` in ``batch`` mode, as the official recipe sets it.

Per batch: with probability ``prob`` mix; then CutMix with probability ``switch_prob`` (λ ~ Beta(1.0, 1.0)),
else Mixup (λ ~ Beta(0.8, 0.8)). Each image is mixed with the batch flipped (image i with image B−1−i).
CutMix pastes a box of side √(1−λ)·H × √(1−λ)·W centred uniformly (clipped at the border) and corrects λ to
the pasted area. Targets are smoothed one-hots: off = ε/K, on = 1 − ε + ε/K, mixed as λ·y + (1−λ)·flip(y).
The loss for such soft targets is ``soft_target_cross_entropy``; with ε only (no mixing) it equals timm's
``LabelSmoothingCrossEntropy``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn.functional as F


def smooth_one_hot(labels: paddle.Tensor, num_classes: int, smoothing: float = 0.0) -> paddle.Tensor:
    """(B,) int labels → (B, K) float32 targets, off = ε/K, on = 1 − ε + ε/K."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    return F.one_hot(labels.astype("int64").flatten(), num_classes).astype("float32") * (on - off) + off


def mixup_target(
    labels: paddle.Tensor, num_classes: int, lam: float = 1.0, smoothing: float = 0.0
) -> paddle.Tensor:
    y = smooth_one_hot(labels, num_classes, smoothing)
    return y * lam + y.flip([0]) * (1.0 - lam)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the pasted box for a given λ (timm's ``rand_bbox``)."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(y0), int(y1), int(x0), int(x1)


def soft_target_cross_entropy(logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
    """mean over the batch of −Σ_k target_k · log softmax(logits)_k."""
    return (-target * F.log_softmax(logits.astype("float32"), axis=-1)).sum(axis=-1).mean()


@dataclass(frozen=True)
class Mixup:
    """``mixup(x, labels, rng)`` → (mixed images, soft targets); pass-through mixing when both alphas are 0."""

    num_classes: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def sample(self, rng: np.random.Generator) -> tuple[float, bool]:
        """(λ, use_cutmix) for one batch."""
        if not self.enabled or rng.random() >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(rng.beta(alpha, alpha)), use_cutmix

    def __call__(
        self, x: paddle.Tensor, labels: paddle.Tensor, rng: np.random.Generator
    ) -> tuple[paddle.Tensor, paddle.Tensor]:
        lam, use_cutmix = self.sample(rng)
        if lam < 1.0:
            if x.shape[0] % 2:
                raise ValueError(f"Mixup needs an even batch size, got {x.shape[0]} (use drop_last)")
            if use_cutmix:
                height, width = x.shape[-2:]
                y0, y1, x0, x1 = cutmix_box(height, width, lam, rng)
                if y1 > y0 and x1 > x0:  # an empty box (λ near 1, or side 1 halved to 0) pastes nothing
                    x = x.clone()
                    x[:, :, y0:y1, x0:x1] = x.flip([0])[:, :, y0:y1, x0:x1]
                lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
            else:
                x = x * lam + x.flip([0]) * (1.0 - lam)
        return x, mixup_target(labels, self.num_classes, lam, self.label_smoothing)
