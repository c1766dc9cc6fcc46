"""The speed layers of ``shunted/models/layers.py`` compute what the plain Paddle layers compute.

``BiasViewConv2D`` adds the bias through a 3-D view (bit for bit ``F.conv2d``); ``PixelLinear`` applies a Linear
at every pixel of an NCHW image (a 1×1 conv) and is seen by forward hooks like any layer.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from shunted.models.layers import BiasViewConv2D, PixelLinear, conv2d


@pytest.mark.parametrize(
    ("channels", "out", "kernel", "stride", "padding", "groups"),
    [(64, 64, 3, 1, 1, 64), (32, 48, 2, 2, 0, 1), (16, 32, 1, 1, 0, 1), (24, 24, 3, 2, 1, 1)],
)
def test_conv_layer_matches_paddle_conv_bit_for_bit(channels, out, kernel, stride, padding, groups):
    paddle.seed(0)
    layer = BiasViewConv2D(channels, out, kernel, stride=stride, padding=padding, groups=groups)
    layer.bias.set_value(paddle.randn([out]))  # the default init is zero, which would hide a missing add
    x = paddle.randn([3, channels, 14, 10])
    expected = F.conv2d(x, layer.weight, layer.bias, stride=stride, padding=padding, groups=groups)
    got = layer(x)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_conv_without_bias_and_gradients():
    paddle.seed(1)
    x = paddle.randn([2, 8, 6, 6])
    weight = paddle.randn([4, 8, 1, 1])
    bias = paddle.randn([4])
    weight.stop_gradient = bias.stop_gradient = False
    np.testing.assert_array_equal(conv2d(x, weight, None).numpy(), F.conv2d(x, weight).numpy())
    conv2d(x, weight, bias).sum().backward()
    # d(sum)/d(bias_c) = number of output positions per channel = batch · H · W
    np.testing.assert_allclose(bias.grad.numpy(), np.full(4, 2 * 6 * 6, np.float32))


def _static_ops(layer) -> list[str]:
    static = paddle.jit.to_static(layer, full_graph=True)
    spec = [paddle.static.InputSpec([None, 8, 6, 6], "float32")]
    program = static.forward.concrete_program_specify_input_spec(spec).main_program
    return [op.name() for op in program.global_block().ops]


def test_static_graph_is_the_one_of_paddles_conv_layer():
    """Under to_static the layer is nn.Conv2D's own graph (the conv + bias pattern the export passes fuse)."""
    ours = _static_ops(BiasViewConv2D(8, 8, 3, padding=1))
    assert "pd_op.conv2d" in ours
    assert ours == _static_ops(paddle.nn.Conv2D(8, 8, 3, padding=1))


def test_conv_dilation_is_honoured():
    """The dygraph path passes dilation through (it used to be dropped silently)."""
    paddle.seed(3)
    layer = BiasViewConv2D(8, 8, 3, padding=2, dilation=2)
    layer.bias.set_value(paddle.randn([8]))
    x = paddle.randn([2, 8, 12, 12])
    expected = F.conv2d(x, layer.weight, layer.bias, padding=2, dilation=2)
    np.testing.assert_array_equal(layer(x).numpy(), expected.numpy())


@pytest.mark.parametrize("kwargs", [{"padding_mode": "reflect", "padding": 1}, {"data_format": "NHWC"}])
def test_conv_refuses_what_it_does_not_compute(kwargs):
    with pytest.raises(ValueError, match="BiasViewConv2D supports"):
        BiasViewConv2D(8, 8, 3, **kwargs)


def test_pixel_linear_is_the_linear_at_every_pixel():
    paddle.seed(4)
    layer = PixelLinear(6, 10)
    layer.bias.set_value(paddle.randn([10]))
    x = paddle.randn([2, 6, 5, 7])
    tokens = x.transpose([0, 2, 3, 1])  # (B, H, W, C): the Linear over the channel axis
    expected = paddle.nn.functional.linear(tokens, layer.weight, layer.bias).transpose([0, 3, 1, 2])
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert [k for k, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight.shape == [6, 10]  # Paddle's Linear layout: checkpoints map as for any Linear


def test_pixel_linear_fires_forward_hooks():
    """The feed-forward's fc1/fc2 are called as layers, so hooks (summaries, profilers) see them."""
    from shunted.models.shunted import Mlp

    mlp = Mlp(8, 16)
    seen = []
    for fc in (mlp.fc1, mlp.fc2):
        fc.register_forward_post_hook(lambda layer, inputs, output: seen.append(list(output.shape)))
    mlp(paddle.randn([2, 12, 8]), 3, 4)
    assert seen == [[2, 16, 3, 4], [2, 8, 3, 4]]
