"""The runtimes (shunted/runtime/) agree with dygraph; the oneDNN workaround is still needed and still sufficient."""

from __future__ import annotations

import runpy

import numpy as np
import pytest
from exporters import needs_onnx_exporter

from shunted.engine.export import load_batch
from shunted.engine.session import RuntimeConfig, model_predictor, open_model
from shunted.errors import ShuntedError
from shunted.factory import create_model
from shunted.runtime import make_predictor
from shunted.runtime.dygraph import dygraph_outputs
from shunted.runtime.paddle_inference import BROKEN_ONEDNN_PASSES
from shunted.runtime.recheck import bucket, uncertain_rows, with_fp32_recheck

# Runtimes with an fp32 and a ``_bf16`` backend. OpenVINO's are checked by tests/engine/openvino_cases.py, in a
# process of their own (tests/engine/test_openvino.py), with the same functions.
RUNTIMES = ["inference"]


@pytest.fixture(scope="module")
def batch(shared_dir, model_t):
    files = sorted((shared_dir / "data" / "imagenet-samples").glob("*.JPEG"))[:2]
    return load_batch(files, model_t, 224)


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_inference_backend_matches_dygraph(model_t, batch, relative_error):
    """Fails if the mis-fusing oneDNN passes come back (then logits are off by ~0.1)."""
    (expected,) = dygraph_outputs(model_t, batch)
    got = model_predictor("inference", model_t, threads=2)(batch)
    assert relative_error(got, expected) <= 1e-5


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_onnxruntime_backend_matches_dygraph(model_t, batch, relative_error):
    pytest.importorskip("onnxruntime")
    needs_onnx_exporter()
    (expected,) = dygraph_outputs(model_t, batch)
    got = model_predictor("onnxruntime", model_t, threads=2)(batch)
    assert relative_error(got, expected) <= 1e-5


def test_dygraph_backend_is_the_model(model_t, batch, relative_error):
    (expected,) = dygraph_outputs(model_t, batch)
    got = make_predictor("dygraph", model_t, threads=2)(batch)
    assert got.shape == expected.shape and relative_error(got, expected) <= 1e-6


def test_onednn_defect_is_still_present(repo_root):
    """The isolated repro still fails with the default passes and passes without them.

    When a Paddle upgrade fixes the passes this test fails: then drop BROKEN_ONEDNN_PASSES (and this test).
    """
    repro = runpy.run_path(str(repo_root / "tools" / "onednn_fusion_repro.py"))
    assert repro["main"](["--batch", "2"]) == 1, (
        f"Paddle's oneDNN passes {BROKEN_ONEDNN_PASSES} now give correct results: remove the workaround"
    )


def test_unknown_backend_and_missing_export_are_clear_errors(tmp_path, model_t):
    with pytest.raises(ShuntedError, match="--backend 'tensorrt'"):
        make_predictor("tensorrt", model_t)
    with pytest.raises(ShuntedError, match="no model.json"):
        make_predictor("inference", tmp_path)
    with pytest.raises(ShuntedError, match="needs a model"):
        make_predictor("dygraph", tmp_path)
    with pytest.raises(TypeError, match="model_predictor"):  # runtime/ reads exports; engine/ exports models
        make_predictor("inference", model_t)
    with pytest.raises(ShuntedError, match="--backend 'tensorrt'"):
        model_predictor("tensorrt", model_t)


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_checkpoint_on_inference_backend_matches_dygraph(demo_checkpoint, cifar_batch, relative_error):
    """What ``shunted eval/predict --backend inference`` runs: the checkpoint's model exported at the eval size."""
    opened = open_model("shunted_t", demo_checkpoint, RuntimeConfig("inference", threads=2, img_size=64))
    model = create_model("shunted_t", pretrained=demo_checkpoint)
    (expected,) = dygraph_outputs(model, cifar_batch)
    got = opened.predictor(cifar_batch)
    assert opened.num_classes == 10 and got.shape == (3, 10)
    assert opened.weights_sha256 == model.pretrained_sha256 and opened.img_size == 64
    assert relative_error(got, expected) <= 1e-5
    with pytest.raises(ShuntedError, match="--num-classes is 1000"):
        open_model(
            "shunted_t", demo_checkpoint, RuntimeConfig("inference", img_size=64), expect_num_classes=1000
        )


def _cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@pytest.mark.skipif(
    not _cpu_has_bf16(), reason="the CPU has no AVX-512 BF16 / AMX (oneDNN would not use bf16)"
)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bf16_backend_is_really_bfloat16_and_close(demo_checkpoint, cifar_batch, relative_error, runtime):
    model = create_model("shunted_t", pretrained=demo_checkpoint)
    fp32 = model_predictor(runtime, model, threads=2, img_size=64)
    bf16 = model_predictor(f"{runtime}_bf16", model, threads=2, img_size=64)
    expected, got = fp32(cifar_batch), bf16(cifar_batch)
    err = relative_error(got, expected)
    assert 1e-4 < err < 5e-2  # bfloat16 keeps 8 mantissa bits: visibly different from fp32, but close


def test_uncertain_rows_are_the_near_ties():
    logits = np.array([[0.0, 1.0, 1.02, -1.0], [0.0, 3.0, 1.0, -1.0], [2.0, 2.0, 0.0, 0.0]], np.float32)
    assert uncertain_rows(logits, 0.15).tolist() == [0, 2]
    assert uncertain_rows(logits, 0.0).size == 0
    assert uncertain_rows(logits[:, :1], 0.15).size == 0  # one class: nothing to decide


@pytest.mark.skipif(
    not _cpu_has_bf16(), reason="the CPU has no AVX-512 BF16 / AMX (oneDNN would not use bf16)"
)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bf16_recheck_replaces_near_ties_by_fp32(
    demo_checkpoint, cifar_batch, relative_error, monkeypatch, runtime
):
    model = create_model("shunted_t", pretrained=demo_checkpoint)
    expected = model_predictor(runtime, model, threads=2, img_size=64)(cifar_batch)
    every = model_predictor(f"{runtime}_bf16", model, threads=2, img_size=64, recheck_margin=1e9)
    assert relative_error(every(cifar_batch), expected) <= 1e-5  # every row is a "near tie"
    never = model_predictor(f"{runtime}_bf16", model, threads=2, img_size=64, recheck_margin=0.0)
    assert relative_error(never(cifar_batch), expected) > 1e-4  # never recheck: plain bfloat16
    assert every.stats == {"rows": 3, "rechecked": 3, "calls": 1}
    assert never.stats == {"rows": 3, "rechecked": 0, "calls": 0}


def test_recheck_margin_is_a_parameter_of_each_predictor():
    """Rows below the margin take the exact predictor's output; two predictors keep their own margins."""
    logits = np.array([[0.0, 1.0, 1.02, -1.0], [0.0, 3.0, 1.0, -1.0], [2.0, 2.0, 0.0, 0.0]], np.float32)
    calls = []

    def run(x):
        return logits[x[:, 0].astype(int)].copy()

    def exact(x):
        calls.append(len(x))
        return np.full((len(x), 4), 7.0, np.float32)

    rows = np.arange(3, dtype=np.float32)[:, None]
    wide = with_fp32_recheck(run, exact, margin=0.15)
    plain = with_fp32_recheck(run, exact, margin=0.0)
    out = wide(rows)
    np.testing.assert_array_equal(out[[0, 2]], 7.0)  # the two near ties, recomputed together
    np.testing.assert_array_equal(out[1], logits[1])
    assert wide.stats == {"rows": 3, "rechecked": 2, "calls": 1}
    np.testing.assert_array_equal(plain(rows), logits)  # margin 0: plain bf16, nothing recomputed
    assert plain.stats == {"rows": 3, "rechecked": 0, "calls": 0}
    assert calls == [1, 2, 1]  # a warm-up row per predictor, then one call for all the rechecked rows


def test_recheck_rows_run_in_one_padded_batch_and_land_in_their_rows():
    """Three near ties of five rows: one exact call of 4 rows (a power of two: the last row repeated), and each
    recomputed row goes back to its own index. Mutation: writing the exact rows in batch order (``y[:3] = ...``)
    or leaving the padding in breaks the row check."""
    near = np.array([0.0, 1.0, 1.001, -1.0], np.float32)
    clear = np.array([0.0, 5.0, 1.0, -1.0], np.float32)
    logits = np.stack([near, clear, near, near, clear])
    seen = []

    def exact(x):
        seen.append(x[:, 0].copy())
        return np.repeat(x[:, :1], 4, axis=1).astype(np.float32) * 10  # row i → 10·i everywhere

    ids = np.arange(5, dtype=np.float32)[:, None]
    predict = with_fp32_recheck(lambda x: logits.copy(), exact, margin=0.15)
    out = predict(ids)
    assert [len(s) for s in seen] == [1, 4] and seen[1].tolist() == [0, 2, 3, 3]
    np.testing.assert_array_equal(out[[0, 2, 3], 0], [0, 20, 30])
    np.testing.assert_array_equal(out[[1, 4]], logits[[1, 4]])
    assert [bucket(n) for n in (1, 2, 3, 4, 5, 33, 64)] == [1, 2, 4, 4, 8, 64, 64]
    unpadded = with_fp32_recheck(lambda x: logits.copy(), exact, margin=0.15, buckets=False)
    seen.clear()
    out = unpadded(ids)  # a runtime that takes any count (OpenVINO's dynamic-batch recheck): no padding
    assert [len(s) for s in seen] == [1, 3] and seen[1].tolist() == [0, 2, 3]
    np.testing.assert_array_equal(out[[0, 2, 3], 0], [0, 20, 30])
