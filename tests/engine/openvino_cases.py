"""OpenVINO backend checks, run by tests/engine/test_openvino.py in a process of their own.

In the pytest process that also runs Paddle's multi-process DataLoader (evaluation and training tests), OpenVINO's
worker threads made the process crash with SIGSEGV, at exit or in a later test. Not collected by the main run
(the file name does not start with ``test_``).
"""

from __future__ import annotations

import numpy as np
import pytest

# pytest's default "prepend" import mode puts this folder on sys.path
from test_backends import _cpu_has_bf16
from test_backends import test_bf16_backend_is_really_bfloat16_and_close as _bf16_close
from test_backends import test_bf16_recheck_replaces_near_ties_by_fp32 as _bf16_recheck

from shunted.engine.session import model_predictor
from shunted.factory import create_model
from shunted.runtime.dygraph import dygraph_outputs

pytest.importorskip("openvino")
pytest.importorskip("paddle2onnx")


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
