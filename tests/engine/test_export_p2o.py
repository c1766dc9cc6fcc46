"""The ONNX export through ``p2o`` (a PIR → ONNX program), the exporter where paddle2onnx has no wheel."""

from __future__ import annotations

import numpy as np
import pytest

from shunted.engine.export import dygraph_outputs
from shunted.factory import create_model
from shunted.runtime import make_predictor


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
@pytest.mark.parametrize("name", ["shunted_t", "shunted_t_fpn"])
def test_p2o_export_matches_dygraph(monkeypatch, tmp_path, relative_error, name):
    """Where paddle2onnx has no wheel (Python 3.13) the ONNX export goes through the ``p2o`` program; its model
    must match dygraph like paddle2onnx's (p2o 0.1.2: 6.5e-7 / 6.8e-7 measured). Skips where p2o is absent."""
    import shunted.engine.export as export

    if export._p2o_program() is None:
        pytest.skip("p2o is not installed (a dependency on Python >= 3.13 only)")
    monkeypatch.setattr(export, "onnx_exporter", lambda: "p2o")
    model = create_model(name, **({"num_classes": 5} if name.endswith("_fpn") else {}))
    model.eval()
    export.save_onnx(model, tmp_path, 64)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 96 if name.endswith("_fpn") else 64))
    x = x.astype(np.float32)
    (expected,) = dygraph_outputs(model, x)
    assert relative_error(make_predictor("onnxruntime", tmp_path, 2)(x), expected) <= 1e-5
