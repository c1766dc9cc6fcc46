"""Exponential moving average of the weights (timm's ``ModelEma``), optional in the recipe.

After every optimiser step: ema ← decay · ema + (1 − decay) · weight for float parameters and buffers
(integer buffers are copied). Kept as Paddle tensors on the model's device.
"""

from __future__ import annotations

from collections.abc import Mapping

import paddle


class ModelEMA:
    def __init__(self, model: paddle.nn.Layer, decay: float = 0.99996) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        for key, value in model.state_dict().items():
            ema = self.state[key]
            if paddle.is_floating_point(value):
                ema.set_value(ema * self.decay + value.detach() * (1.0 - self.decay))
            else:
                ema.set_value(value)

    def load(self, state: Mapping) -> None:
        for key, value in state.items():
            self.state[key].set_value(value)
