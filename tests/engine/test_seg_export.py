"""Segmentation exports (issue 15): ``shunted export`` of ``shunted_*_fpn`` and the static runtimes behind
``seg-eval --backend`` (``shunted/engine/session.py`` ``open_model``).

The fast tests check the three pieces that make a segmentation export right, each on a small network: the runtime
padding equals the model's own (``shunted/runtime/padding.py``), Paddle Inference runs resize ops (Paddle 3.3.1's
oneDNN cannot: ``shunted/runtime/paddle_inference.py``), and the ONNX GroupNorm epsilon that paddle2onnx 2.1
garbles is restored (``shunted/engine/export.py`` ``fix_group_norm_epsilon``). The slow ones export a randomly
initialised ``shunted_t_fpn`` (K = 5) and compare every runtime with dygraph on real CamVid frames.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import shunted
from shunted.cli import main
from shunted.engine.export import fix_group_norm_epsilon, rel_err, save_paddle
from shunted.errors import ShuntedError
from shunted.runtime import make_predictor
from shunted.runtime.dygraph import dygraph_outputs, dygraph_predictor
from shunted.runtime.padding import padded_predictor

K = 5


@pytest.fixture(scope="module")
def seg_model():
    paddle.seed(5)
    model = shunted.create_model("shunted_t_fpn", num_classes=K)
    model.eval()
    return model


def _x(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def test_runtime_padding_equals_the_models_own(seg_model):
    """padded_predictor around a multiple-of-32-only runner = ShuntedFPN's own pad-and-crop, at odd sizes."""
    calls = []
    inner = dygraph_predictor(seg_model)

    def run(x):
        calls.append(x.shape[2:])
        assert x.shape[2] % 32 == 0 and x.shape[3] % 32 == 0
        return inner(x)

    predict = padded_predictor(run, 32)
    for shape in [(1, 3, 50, 70), (2, 3, 64, 33), (1, 3, 64, 96)]:
        x = _x(shape)
        (expected,) = dygraph_outputs(seg_model, x)
        got = predict(x)
        assert got.shape == (shape[0], K, *shape[2:])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert calls == [(64, 96), (64, 64), (64, 96)]


class Resizer(paddle.nn.Layer):
    """conv → GroupNorm → nearest ×2 + bilinear ×2: the ops of the FPN head that Shunted's classifier lacks."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 32, 3, padding=1)
        self.gn = paddle.nn.GroupNorm(8, 32, epsilon=1e-5)

    def forward(self, x):
        x = self.gn(self.conv(x))
        h, w = x.shape[2], x.shape[3]
        size = (
            [h * 2, w * 2]
            if isinstance(h, int) and h > 0
            else [paddle.shape(x)[2] * 2, paddle.shape(x)[3] * 2]
        )
        return F.interpolate(x, size=size, mode="nearest") + F.interpolate(
            x, size=size, mode="bilinear", align_corners=False, align_mode=0
        )


@pytest.fixture(scope="module")
def resizer_export(tmp_path_factory):
    paddle.seed(3)
    model = Resizer()
    model.eval()
    model.decode_head = (
        paddle.nn.Identity()
    )  # a "segmentation model" for save_paddle: dynamic height and width
    folder = tmp_path_factory.mktemp("resizer")
    return model, save_paddle(model, folder, 32), folder


def test_paddle_inference_runs_resize_ops(resizer_export):
    """Paddle 3.3.1 + oneDNN fails on any resize op ('ConvertPirAttribute2RuntimeAttribute not support'): such
    programs run on the native kernels, at any size (the input spec is dynamic)."""
    model, _, folder = resizer_export
    predict = make_predictor("inference", folder, threads=2)
    for shape in [(1, 3, 16, 16), (2, 3, 24, 40)]:
        x = _x(shape, 1)
        (expected,) = dygraph_outputs(model, x)
        got = predict(x)
        assert got.shape == expected.shape == (shape[0], 32, 2 * shape[2], 2 * shape[3])
        assert rel_err(got, expected) <= 1e-6
    with pytest.raises(ShuntedError, match="inference_bf16.*oneDNN cannot run"):
        make_predictor("inference_bf16", folder, threads=2)


def test_onnx_group_norm_epsilon_is_restored(resizer_export):
    """paddle2onnx 2.1 writes an uninitialised epsilon into the InstanceNormalization it makes of a GroupNorm."""
    paddle2onnx = pytest.importorskip("paddle2onnx")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, json_path, _ = resizer_export
    raw = paddle2onnx.export(
        str(json_path),
        str(json_path.with_suffix(".pdiparams")),
        save_file=None,
        opset_version=17,
        enable_onnx_checker=True,
        enable_optimize=True,
        optimize_tool="None",
    )
    fixed = fix_group_norm_epsilon(raw, json_path)
    (node,) = [n for n in onnx.load_from_string(fixed).graph.node if n.op_type == "InstanceNormalization"]
    (eps,) = [a.f for a in node.attribute if a.name == "epsilon"]
    assert eps == pytest.approx(1e-5, rel=1e-6)
    session = ort.InferenceSession(fixed, providers=["CPUExecutionProvider"])
    x = _x((2, 3, 24, 40), 2)
    (expected,) = dygraph_outputs(model, x)
    assert rel_err(session.run(None, {"x": x})[0], expected) <= 1e-6
    # a program without GroupNorm (the classifiers) is returned as it is, not even parsed
    plain = json_path.parent / "plain.json"
    plain.write_text('{"ops": [{"#": "1.conv2d"}, {"#": "1.layer_norm"}]}')
    assert fix_group_norm_epsilon(b"not an onnx model", plain) == b"not an onnx model"


def test_export_command_refuses_bad_segmentation_arguments(tmp_path, capsys):
    out = str(tmp_path / "e")
    assert main(["export", "--model", "shunted_t_fpn", "--format", "onnx", "--output", out]) == 2
    assert "--num-classes: needed for shunted_t_fpn without --weights" in capsys.readouterr().err
    assert (
        main(
            ["export", "--model", "shunted_t", "--format", "onnx", "--output", out, "--img-size", "64", "96"]
        )
        == 2
    )
    assert "a classification export is square" in capsys.readouterr().err
    args = ["export", "--model", "shunted_s_fpn", "--num-classes", "3", "--format", "paddle", "--output", out]
    assert main([*args, "--features"]) == 2
    assert "--features: exports a classification backbone's stage maps" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


@pytest.fixture(scope="module")
def seg_weights(seg_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("seg") / "seg.pdparams"
    paddle.save(seg_model.state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def camvid_frames(shared_dir):
    folder = shared_dir / "data" / "camvid" / "val"
    assert len(list(folder.glob("*.jpg"))) >= 3
    return folder


@pytest.mark.slow  # two full exports with their parity checks (~1 min on 2 cores)
def test_export_command_writes_checked_segmentation_exports(
    seg_model, seg_weights, camvid_frames, tmp_path, capsys
):
    """``shunted export`` of shunted_t_fpn to Paddle Inference and ONNX at 64×64 (K=5) on real CamVid frames:
    the parity figures are in export.json, and the written exports, reopened, take any size."""
    results = {}
    for fmt in ("paddle", "onnx"):
        out = tmp_path / fmt
        argv = ["export", "--model", "shunted_t_fpn", "--weights", str(seg_weights), "--format", fmt]
        argv += ["--output", str(out), "--img-size", "64", "--check-images", str(camvid_frames)]
        assert main(argv) == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        assert "any H×W" in printed and "64×64 and 96×128 and 77×71" in printed
        meta = json.loads((out / "export.json").read_text())
        assert (meta["task"], meta["dynamic_hw"], meta["pad_to"]) == ("segmentation", True, 32)
        assert meta["img_size"] == [64, 64] and meta["num_classes"] == K and meta["outputs"] == ["logits"]
        assert meta["parity"]["sizes"] == [[64, 64], [96, 128], [77, 71]]
        assert meta["parity"]["images"] == sorted(p.name for p in camvid_frames.glob("*.jpg"))[:3]
        assert meta["parity"]["max_rel_err"] <= 1e-5 and meta["parity"]["max_abs_err"] <= 1e-4
        results[fmt] = meta["parity"]
    print(json.dumps(results))

    # Independently of the export's own check: the files as written, on sizes it did not check
    x = _x((2, 3, 45, 90), 4)
    (expected,) = dygraph_outputs(seg_model, x)
    backends = [("inference", "paddle"), ("onnxruntime", "onnx")]
    if importlib.util.find_spec("openvino") is not None:  # optional extra
        backends.append(("openvino", "onnx"))
    for backend, fmt in backends:
        got = make_predictor(backend, tmp_path / fmt, threads=2)(x)
        assert got.shape == (2, K, 45, 90), backend
        assert rel_err(got, expected) <= 1e-5, backend


@pytest.mark.slow  # one export per backend (~40 s on 2 cores)
@pytest.mark.parametrize("backend", ["inference", "onnxruntime"])
def test_open_model_puts_a_segmentation_checkpoint_on_a_static_runtime(backend, seg_model, seg_weights):
    """What ``seg-eval --backend`` opens: the checkpoint on a static runtime, any input size, dygraph's logits."""
    from shunted.engine.session import RuntimeConfig, open_model

    opened = open_model("shunted_t_fpn", seg_weights, RuntimeConfig(backend, threads=2), expect_num_classes=K)
    assert opened.num_classes == K and opened.backend == backend
    for shape in [(1, 3, 64, 64), (2, 3, 50, 70)]:
        x = _x(shape, 5)
        (expected,) = dygraph_outputs(seg_model, x)
        got = opened.predictor(x)
        assert got.shape == (shape[0], K, *shape[2:])
        assert rel_err(got, expected) <= 1e-5
