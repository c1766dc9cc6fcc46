"""The ``onnxruntime`` runtime: ONNX Runtime (CPU) on a ``model.onnx`` export (extra ``shunted-paddle[onnx]``)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ShuntedError
from .layout import onnx_file
from .recheck import Predictor


def onnxruntime_predictor(export_dir: str | os.PathLike, threads: int) -> Predictor:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ShuntedError(
            "--backend onnxruntime needs the optional packages: pip install 'shunted-paddle[onnx]'"
        ) from exc
    path = onnx_file(export_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # unused-initializer notices of paddle2onnx graphs are not errors
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def predict(x: np.ndarray):
        result = session.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return result[0] if len(result) == 1 else result

    return predict
