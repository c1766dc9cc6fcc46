"""Reproduce, in isolation, two Paddle Inference oneDNN fusion passes that give wrong results (for an upstream report).

Two tiny networks, each saved with ``paddle.jit.save`` and run through a CPU ``paddle.inference`` predictor with
oneDNN, once with the default passes and once with the suspect pass deleted; the output is compared with dygraph:

1. ``reshape_transpose_matmul_fuse_pass``: conv → reshape([0, C, -1]) → transpose([0, 2, 1]) → Linear
   (how a vision transformer turns a feature map into tokens);
2. ``matmul_transpose_reshape_fuse_pass``: softmax(q kᵀ) v → transpose([0, 2, 1, 3]) → reshape([0, 0, C]),
   plus V itself merged back to tokens (transpose → reshape → transpose), summed → Linear (multi-head attention
   with a second path from V, as Shunted's last stage adds a local conv of V). Without the V path the pass is
   correct.

Prints paddle's version and, per network, the max absolute and relative error with and without the pass.
Exit status 1 if a network is wrong with the default passes (the defect is present), 0 otherwise.

    python tools/onednn_fusion_repro.py [--threads 2] [--batch 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import paddle
import paddle.inference as pi
from paddle import nn

TOL = 1e-4  # float32 oneDNN vs dygraph differ by ~1e-6 when correct


class ConvToTokens(nn.Layer):
    """conv → reshape([0, C, -1]) → transpose → Linear."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2D(3, channels, 3, stride=2, padding=1)
        self.fc = nn.Linear(channels, 48)

    def forward(self, x):
        x = self.conv(x)
        x = x.reshape([0, self.channels, -1]).transpose([0, 2, 1])
        return self.fc(x)


class HeadsMerge(nn.Layer):
    """Attention whose heads are merged by transpose([0, 2, 1, 3]) → reshape([0, 0, C]); V also feeds the sum."""

    def __init__(self, dim: int = 64, heads: int = 4):
        super().__init__()
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        q = self.q(x).reshape([0, 0, self.heads, self.head_dim]).transpose([0, 2, 1, 3])
        kv = self.kv(x).reshape([0, -1, 2, self.heads, self.head_dim]).transpose([2, 0, 3, 1, 4])
        k, v = kv[0], kv[1]
        attn = paddle.nn.functional.softmax(paddle.matmul(q, k, transpose_y=True) * self.head_dim**-0.5, -1)
        x = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([0, 0, self.dim])
        v_tokens = v.transpose([0, 1, 3, 2]).reshape([0, self.dim, -1]).transpose([0, 2, 1])
        return self.proj(x + v_tokens)


def predictor_output(folder: Path, x: np.ndarray, threads: int, delete: list[str]) -> np.ndarray:
    config = pi.Config(str(folder / "model.json"), str(folder / "model.pdiparams"))
    config.disable_gpu()
    config.enable_onednn()
    config.set_cpu_math_library_num_threads(threads)
    config.switch_ir_optim(True)
    config.disable_glog_info()
    for name in delete:
        config.delete_pass(name)
    predictor = pi.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def check(name: str, layer: nn.Layer, x: np.ndarray, suspect: str, threads: int) -> bool:
    """Print the errors with and without ``suspect``; True when the default passes give a wrong result."""
    layer.eval()
    spec = [paddle.static.InputSpec([None, *x.shape[1:]], "float32", "x")]
    expected = layer(paddle.to_tensor(x)).numpy()
    broken = False
    with tempfile.TemporaryDirectory() as tmp:
        paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), f"{tmp}/model", spec)
        for label, delete in (("default passes", []), (f"without {suspect}", [suspect])):
            got = predictor_output(Path(tmp), x, threads, delete)
            if got.shape != expected.shape:
                print(f"  {name:14s} {label:52s} shape {got.shape} != dygraph {expected.shape}")
                broken |= not delete
                continue
            err = float(np.abs(got - expected).max())
            rel = float(np.linalg.norm(got - expected) / np.linalg.norm(expected))
            verdict = "WRONG" if rel > TOL else "ok"
            print(f"  {name:14s} {label:52s} max abs err {err:.3e}  rel err {rel:.3e}  {verdict}")
            broken |= rel > TOL and not delete
    return broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)
    paddle.set_device("cpu")
    paddle.seed(0)
    rng = np.random.default_rng(0)
    print(f"paddle {paddle.__version__} (commit {paddle.version.commit[:10]}), oneDNN CPU predictor")
    cases = [
        (
            "conv→tokens",
            ConvToTokens(),
            rng.standard_normal((args.batch, 3, 32, 32), dtype=np.float32),
            "reshape_transpose_matmul_fuse_pass",
        ),
        (
            "heads merge",
            HeadsMerge(),
            rng.standard_normal((args.batch, 49, 64), dtype=np.float32),
            "matmul_transpose_reshape_fuse_pass",
        ),
    ]
    broken = [name for name, layer, x, suspect in cases if check(name, layer, x, suspect, args.threads)]
    print("defect present in: " + ", ".join(broken) if broken else "no defect: both networks match dygraph")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
