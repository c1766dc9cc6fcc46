"""The detectors' export (shunted export of shunted_*_retinanet): raw outputs with a dynamic height and width, checked
against dygraph at two sizes by the command itself; det-eval through the export gives dygraph's detections (the
decoding and NMS are the same numpy code for every runtime). Slow stage: each export takes ~20 s on 2 cores."""

from __future__ import annotations

import json

import numpy as np
import paddle
import pytest
from exporters import needs_onnx_exporter

import shunted
from shunted.cli import main
from shunted.convert.writer import write_pdparams
from shunted.models.weights import state_dict_numpy
from shunted.runtime.layout import read_info
from tests.data.test_det_data import _voc


@pytest.mark.slow  # integration (exports and three evaluations): the marked stage, make test-slow
@pytest.mark.parametrize(("fmt", "backend"), [("paddle", "inference"), ("onnx", "onnxruntime")])
def test_export_and_det_eval_through_it_equal_dygraph(tmp_path, fmt, backend):
    if fmt == "onnx":
        needs_onnx_exporter()
    paddle.seed(0)
    model = shunted.create_model("shunted_t_retinanet", num_classes=3)
    paddle.nn.initializer.Constant(1.0)(model.bbox_head.retina_cls.bias)  # scores above 0.05: detections
    weights = tmp_path / "w.pdparams"
    write_pdparams(weights, state_dict_numpy(model))
    out = tmp_path / "export"
    common = ["--model", "shunted_t_retinanet", "--weights", str(weights)]
    assert main(["export", *common, "--format", fmt, "--output", str(out), "--img-size", "96", "128"]) == 0
    info = read_info(out)
    assert info.task == "detection" and info.dynamic_hw and info.pad_to == 0
    assert info.outputs == ["cls", "box_deltas"] and info.parity["max_rel_err"] <= 1e-5
    root = _voc(tmp_path / "voc")
    evaluate = ["det-eval", *common, "--data", str(root), "--list", "train.txt", "--img-scale", "100", "75",
                "--workers", "0", "--threads", "1", "--no-progress"]  # fmt: skip
    dets = {}
    for b in ("dygraph", backend):
        assert main([*evaluate, "--backend", b, "--save-detections", str(tmp_path / f"{b}.json")]) == 0
        dets[b] = json.loads((tmp_path / f"{b}.json").read_text())
    a, b = dets["dygraph"], dets[backend]
    assert len(a) == len(b) > 0 and [d["category_id"] for d in a] == [d["category_id"] for d in b]
    np.testing.assert_allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-5)
    np.testing.assert_allclose([d["bbox"] for d in a], [d["bbox"] for d in b], atol=1e-3)
