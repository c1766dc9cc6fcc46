"""Model size figures: trainable parameters and multiply-accumulates (the unit papers call "FLOPs").

``paddle.flops`` 3.3.1 crashes under numpy ≥ 2.3 (``int()`` of a 1-element tensor while tabulating), and it counts
only layers. This counter uses forward hooks for the layers — Conv2D and Linear as multiply-accumulates, the
convention of ``paddle.flops`` and of the paper — and adds the attention products (q·kᵀ and attn·v), which have no
layer of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import paddle
from paddle import nn

from ..models.shunted import Attention


@dataclass(frozen=True)
class MacCount:
    layers: int  # Conv2D + Linear multiply-accumulates (what paddle.flops counts)
    attention: int  # q·kᵀ and attn·v products

    @property
    def total(self) -> int:
        return self.layers + self.attention


def count_trainable_params(model: nn.Layer) -> int:
    return sum(int(p.size) for p in model.parameters() if not p.stop_gradient)


def _layer_macs(layer: nn.Layer, inputs, output) -> int:
    if isinstance(layer, nn.Conv2D):
        _, in_per_group, kh, kw = layer.weight.shape
        return int(output.size) * in_per_group * kh * kw
    if isinstance(layer, nn.Linear):
        return int(output.size) * int(layer.weight.shape[0])
    return 0


def _attention_macs(layer: Attention, inputs, output) -> int:
    _, height, width = inputs
    batch, tokens = output.shape[0], output.shape[1]
    d, r = layer.head_dim, layer.sr_ratio
    if r > 1:
        half = layer.num_heads // 2
        keys = [(height // r) * (width // r), (height * 2 // r) * (width * 2 // r)]
        per_branch = [half * tokens * nk * d * 2 for nk in keys]
        return batch * sum(per_branch)
    return batch * layer.num_heads * tokens * tokens * d * 2


def count_macs(model: nn.Layer, img_size: int | tuple[int, int] = 224) -> MacCount:
    """Multiply-accumulates of one forward pass on a single image of ``img_size``."""
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    totals = {"layers": 0, "attention": 0}
    hooks = []

    def on_layer(layer, inputs, output):
        totals["layers"] += _layer_macs(layer, inputs, output)

    def on_attention(layer, inputs, output):
        totals["attention"] += _attention_macs(layer, inputs, output)

    for layer in model.sublayers(include_self=True):
        if isinstance(layer, (nn.Conv2D, nn.Linear)):  # PixelLinear too: output.size counts its pixels
            hooks.append(layer.register_forward_post_hook(on_layer))
        elif isinstance(layer, Attention):
            hooks.append(layer.register_forward_post_hook(on_attention))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros([1, 3, height, width]))
    finally:
        for h in hooks:
            h.remove()
        model.train() if was_training else model.eval()
    return MacCount(**totals)


def variant_summary(name: str, img_size: int = 224) -> dict:
    """Parameters and MACs of a freshly built variant, next to the paper's figures (for tables)."""
    from ..factory import create_model
    from ..models import get_variant

    variant = get_variant(name)
    model = create_model(name)
    macs = count_macs(model, img_size)
    return {
        "model": name,
        "params": count_trainable_params(model),
        "gmacs_layers": macs.layers / 1e9,
        "gmacs_total": macs.total / 1e9,
        "paper_params_m": variant.paper_params_m,
        "paper_gflops": variant.paper_gflops,
        "paper_top1": variant.paper_top1,
    }
