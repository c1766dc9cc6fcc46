"""The building blocks below the paper's modules: layout changes, stochastic depth, and the two CPU speed layers.

``BiasViewConv2D`` and ``PixelLinear`` are ``nn.Conv2D`` / ``nn.Linear`` with the same parameters (names, shapes,
initialisation), so checkpoints, forward hooks and parameter counts see ordinary layers; only their dygraph
arithmetic is arranged for Paddle's CPU kernels. Both give the values of the plain layer
(a test checks: bit for bit for the conv, float32 rounding for the per-pixel Linear).
"""

from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn


# Both conversions reshape on the token side and transpose through the channels-last view (B, H, W, C): the
# same values as flattening/transposing the (B, C, H·W) view, but on CPU backends the 4-D permutation matches the
# channels-last memory the convs work in. Exported shunted_t, batch 8: Paddle Inference bf16 +7 %, ONNX Runtime
# +11 %, dygraph +7 % (benchmarks/README.md).
def tokens_to_image(x: paddle.Tensor, channels: int, height: int, width: int) -> paddle.Tensor:
    """(B, H·W, C) → (B, C, H, W)."""
    return x.reshape([0, height, width, channels]).transpose([0, 3, 1, 2])


def image_to_tokens(x: paddle.Tensor) -> paddle.Tensor:
    """(B, C, H, W) → (B, H·W, C)."""
    return x.transpose([0, 2, 3, 1]).reshape([0, -1, x.shape[1]])


class DropPath(nn.Layer):
    """Stochastic depth: drop the whole residual branch per sample during training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = [x.shape[0]] + [1] * (x.ndim - 1)
        mask = paddle.floor(keep + paddle.rand(shape, dtype=x.dtype))
        return x / keep * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def conv2d(x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor | None, **kwargs) -> paddle.Tensor:
    """``F.conv2d`` on NCHW; in dygraph the bias is added through a (B, C, H·W) view of the output.

    Same values, bit for bit. Paddle 3.3's eager CPU kernel for the 4-D (1, C, 1, 1) broadcast that ``F.conv2d``
    uses runs at ~0.3 GB/s, about 15× slower than the 3-D (C, 1) one; it was a third of the dygraph forward.
    Static graphs (export) keep the plain conv + bias pattern that the oneDNN / ONNX fusion passes look for.
    """
    if bias is None or not paddle.in_dynamic_mode():
        return F.conv2d(x, weight, bias, **kwargs)
    y = F.conv2d(x, weight, None, **kwargs)
    batch, channels, height, width = y.shape
    return (y.reshape([batch, channels, height * width]) + bias.unsqueeze(1)).reshape(y.shape)


class BiasViewConv2D(nn.Conv2D):
    """``nn.Conv2D`` whose dygraph forward adds the bias through :func:`conv2d`'s 3-D view.

    It supports what the network uses — NCHW, zero padding, any stride, groups and dilation — and refuses the
    rest at construction rather than computing something else.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._padding_mode != "zeros" or self._data_format != "NCHW":
            raise ValueError(
                f"BiasViewConv2D supports padding_mode='zeros' and data_format='NCHW', got "
                f"{self._padding_mode!r} and {self._data_format!r}"
            )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.bias is None or not paddle.in_dynamic_mode():
            return super().forward(x)
        return conv2d(
            x,
            self.weight,
            self.bias,
            stride=self._stride,
            padding=self._padding,
            dilation=self._dilation,
            groups=self._groups,
        )


class PixelLinear(nn.Linear):
    """``nn.Linear`` applied at every pixel of an NCHW image: (B, in, H, W) → (B, out, H, W).

    Computed as a 1×1 conv with the Linear's weight ([in, out] → [out, in, 1, 1]), so a feed-forward can stay in
    the image layout (see ``Mlp``). unsqueeze comes before transpose: Paddle 3.3's DataParallel does not
    all-reduce the gradient of a parameter used through a strided transpose view (``FLAGS_use_stride_kernel``),
    so ranks would drift apart.
    """

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return conv2d(x, self.weight.unsqueeze([2, 3]).transpose([1, 0, 2, 3]), self.bias)
