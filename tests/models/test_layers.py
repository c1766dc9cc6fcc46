"""The dygraph conv path that adds the bias through a 3-D view gives exactly what ``F.conv2d`` gives."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from shunted.models.shunted import Conv2D, conv2d


@pytest.mark.parametrize(
    ("channels", "out", "kernel", "stride", "padding", "groups"),
    [(64, 64, 3, 1, 1, 64), (32, 48, 2, 2, 0, 1), (16, 32, 1, 1, 0, 1), (24, 24, 3, 2, 1, 1)],
)
def test_conv_layer_matches_paddle_conv_bit_for_bit(channels, out, kernel, stride, padding, groups):
    paddle.seed(0)
    layer = Conv2D(channels, out, kernel, stride=stride, padding=padding, groups=groups)
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
    ours = _static_ops(Conv2D(8, 8, 3, padding=1))
    assert "pd_op.conv2d" in ours
    assert ours == _static_ops(paddle.nn.Conv2D(8, 8, 3, padding=1))
