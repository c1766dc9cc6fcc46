"""OpenVINO backend checks, run by tests/engine/test_openvino.py in a process of their own.

In the pytest process that also runs Paddle's multi-process DataLoader (evaluation and training tests), OpenVINO's
worker threads made the process crash with SIGSEGV, at exit or in a later test. Not collected by the main run
(the file name does not start with ``test_``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from exporters import needs_onnx_exporter

# pytest's default "prepend" import mode puts this folder on sys.path
from test_backends import _cpu_has_bf16
from test_backends import test_bf16_backend_is_really_bfloat16_and_close as _bf16_close
from test_backends import test_bf16_recheck_replaces_near_ties_by_fp32 as _bf16_recheck

from shunted.engine.session import model_predictor
from shunted.factory import create_model
from shunted.runtime.dygraph import dygraph_outputs

pytest.importorskip("openvino")
needs_onnx_exporter(module=True)


def count_compiles(monkeypatch) -> list:
    """A list that grows by one at every ``openvino.Core.compile_model`` from now on (this test only)."""
    import openvino as ov

    compiles: list = []
    original = ov.Core.compile_model

    def counting(self, *args, **kwargs):
        compiles.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ov.Core, "compile_model", counting)
    return compiles


def test_openvino_backend_matches_dygraph_for_any_batch_size(demo_checkpoint, cifar_batch, relative_error):
    """Batches of at least ``threads`` images are split over single-thread streams (here 5 → 3 + 2, 2 → 1 + 1);
    a single image runs whole; the parts come back in order."""
    model = create_model("shunted_t", pretrained=demo_checkpoint)
    images = np.concatenate([cifar_batch, cifar_batch[::-1][:2]])
    (expected,) = dygraph_outputs(model, images)
    predict = model_predictor("openvino", model, threads=2, img_size=64)
    for n in (5, 2, 1):
        assert relative_error(predict(images[:n]), expected[:n]) <= 1e-5


def test_openvino_backend_returns_every_stage_map(cifar_batch, relative_error):
    model = create_model("shunted_t", features_only=True)
    expected = dygraph_outputs(model, cifar_batch)
    got = model_predictor("openvino", model, threads=2, img_size=64)(cifar_batch)
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert max(relative_error(g, e) for g, e in zip(got, expected, strict=True)) <= 1e-5


@pytest.mark.skipif(not _cpu_has_bf16(), reason="the CPU has no AVX-512 BF16 / AMX")
def test_openvino_bf16_is_really_bfloat16_and_close(demo_checkpoint, cifar_batch, relative_error):
    _bf16_close(demo_checkpoint, cifar_batch, relative_error, "openvino")


@pytest.mark.skipif(not _cpu_has_bf16(), reason="the CPU has no AVX-512 BF16 / AMX")
def test_openvino_bf16_recheck_replaces_near_ties_by_fp32(
    demo_checkpoint, cifar_batch, relative_error, monkeypatch
):
    _bf16_recheck(demo_checkpoint, cifar_batch, relative_error, monkeypatch, "openvino")


def test_auto_is_openvino_and_its_top1_counts_equal_dygraphs(tmp_path, capsys):
    """``eval`` without --backend runs OpenVINO fp32 (named in the runtime: line) and counts the same top-1 as
    dygraph on 200 CIFAR-10 demo images; the second run reads the export from the start-up cache."""
    import json

    from shunted.cli import main

    repo = Path(__file__).resolve().parents[2]
    ckpt, data = repo / "shunted/assets/demo/ckpt_T_cifar10_fp16.pth", repo / "shunted/assets/cifar10-demo"
    argv = ["eval", "--model", "shunted_t", "--weights", str(ckpt), "--data", str(data), "--img-size", "64"]
    argv += [
        "--resize-short",
        "73",
        "--num-classes",
        "10",
        "--limit",
        "200",
        "--workers",
        "0",
        "--no-progress",
    ]
    results = {}
    for name, extra in (("dygraph", ["--backend", "dygraph"]), ("auto", []), ("auto again", [])):
        out = tmp_path / f"{name}.json"
        assert main([*argv, *extra, "--output", str(out)]) == 0
        results[name] = json.loads(out.read_text())
        printed = capsys.readouterr()
        if name.startswith("auto"):
            assert printed.out.startswith("runtime: openvino (OpenVINO on an ONNX export, float32")
            assert "(chosen by --backend auto)" in printed.out.splitlines()[0]
    counts = {n: (r["top1"], r["top5"]) for n, r in results.items()}
    assert counts["auto"] == counts["dygraph"] == counts["auto again"], counts


def test_the_export_and_compiled_models_are_cached(demo_checkpoint, cifar_batch, relative_error):
    from shunted.engine.session import RuntimeConfig, open_model
    from shunted.runtime.cache import openvino_cache_dir

    first = open_model("shunted_t", demo_checkpoint, RuntimeConfig("openvino", threads=2, img_size=64))
    expected = first.predictor(cifar_batch)
    second = open_model("shunted_t", demo_checkpoint, RuntimeConfig("openvino", threads=2, img_size=64))
    assert second.cached is True
    assert relative_error(second.predictor(cifar_batch), expected) == 0.0
    no_cache = open_model(
        "shunted_t", demo_checkpoint, RuntimeConfig("openvino", threads=2, img_size=64, cache=False)
    )
    assert no_cache.cached is None and relative_error(no_cache.predictor(cifar_batch), expected) <= 1e-6
    from shunted.runtime.cache import cache_root

    blobs = [p for d in (cache_root() / "exports").iterdir() for p in openvino_cache_dir(d).glob("*.blob")]
    assert blobs  # OpenVINO's CACHE_DIR inside the entry


def test_a_smaller_batch_is_padded_to_a_compiled_shape(
    monkeypatch, demo_checkpoint, cifar_batch, relative_error
):
    """The last partial batch (3 after 4) runs on the model compiled for 4, padded, its extra rows dropped; a
    batch under half the size compiles its own. Mutation: a predictor that compiles every new size counts 2
    compiles for the batch of 3; one that forgets to drop the padded rows returns 4 rows."""

    compiles = count_compiles(monkeypatch)
    model = create_model("shunted_t", pretrained=demo_checkpoint)
    images = np.concatenate([cifar_batch, cifar_batch[:1]])
    (expected,) = dygraph_outputs(model, images)
    predict = model_predictor("openvino", model, threads=2, img_size=64)
    before = len(compiles)
    assert relative_error(predict(images), expected) <= 1e-5
    assert len(compiles) == before + 1  # 4 → two parts of 2: one model, two streams
    got = predict(images[:3])
    assert got.shape[0] == 3 and relative_error(got, expected[:3]) <= 1e-5
    assert len(compiles) == before + 1
    assert relative_error(predict(images[:1]), expected[:1]) <= 1e-5
    assert len(compiles) == before + 2  # 1 < 4 / 2: a batch-1 model of its own


def test_a_batch_runs_in_parts_on_every_stream_in_order(
    monkeypatch, demo_checkpoint, cifar_batch, relative_error
):
    """With parts of at most 2 images (``PART``), 7 images on 2 streams run as 4 parts (the last padded), each
    stream taking a second part after its first: the rows come back in their order, equal to dygraph, from one
    compiled model. Mutation: collecting a stream's outputs after reusing it (or in stream order) swaps rows."""
    from shunted.runtime import openvino as ov_runtime

    monkeypatch.setattr(ov_runtime, "PART", 2)
    model = create_model("shunted_t", pretrained=demo_checkpoint)
    images = np.concatenate([cifar_batch, cifar_batch[::-1], cifar_batch[:1]])[:7]
    (expected,) = dygraph_outputs(model, images)
    predict = model_predictor("openvino", model, threads=2, img_size=64)
    compiles = count_compiles(monkeypatch)
    got = predict(images)
    assert got.shape[0] == 7 and relative_error(got, expected) <= 1e-5
    for i in range(7):
        assert relative_error(got[i : i + 1], expected[i : i + 1]) <= 1e-5, i
    assert len(compiles) == 1


def test_the_bf16_recheck_runs_any_count_on_one_fp32_model(
    monkeypatch, demo_checkpoint, cifar_batch, relative_error
):
    """OpenVINO's recheck is one dynamic-batch fp32 model: 1, 2 and 3 rechecked rows (every row a near tie) need
    no compile after the predictor is made, and equal fp32."""
    if not _cpu_has_bf16():
        pytest.skip("the CPU has no AVX-512 BF16 / AMX")
    model = create_model("shunted_t", pretrained=demo_checkpoint)
    exact = model_predictor("openvino", model, threads=2, img_size=64)
    every = model_predictor("openvino_bf16", model, threads=2, img_size=64, recheck_margin=1e9)
    expected = {n: exact(cifar_batch[:n]) for n in (1, 2, 3)}
    every(cifar_batch[:1])  # the bf16 side's batch-1 model
    every(cifar_batch[:3])  # and its model for parts of 2
    compiles = count_compiles(monkeypatch)
    for n in (1, 3, 2):
        assert relative_error(every(cifar_batch[:n]), expected[n]) <= 1e-5
    # 2 rows run as one part of 2 on the model compiled for 3; the recheck compiles none
    assert compiles == []
    assert every.stats["rechecked"] == every.stats["rows"]


def test_the_depthwise_residual_fold_is_the_same_function(demo_checkpoint, relative_error):
    """Folding ``x + dwconv(x)`` into the centre tap leaves fp32 outputs equal to rounding (one fold per
    feed-forward block: 1 + 2 + 4 + 1 in shunted_t). Mutation: folding without the +1 (``new[...] += 0``) drops
    the residual and changes the logits by tens of percent."""
    import tempfile

    import openvino as ov

    from shunted.engine.export import save_onnx
    from shunted.runtime.openvino import fold_depthwise_residuals

    model = create_model("shunted_t", pretrained=demo_checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        path = save_onnx(model, folder, 64)
        core = ov.Core()
        plain, folded = core.read_model(str(path)), core.read_model(str(path))
    assert fold_depthwise_residuals(folded) == 8
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    a = core.compile_model(plain, "CPU", config)(x)[0]
    b = core.compile_model(folded, "CPU", config)(x)[0]
    assert relative_error(b, a) <= 1e-6
    (expected,) = dygraph_outputs(model, x)
    assert relative_error(b, expected) <= 1e-5
