"""The ``openvino`` / ``openvino_bf16`` runtimes: OpenVINO's CPU plugin on an ONNX export, fp32 or bfloat16.

The bf16 one has the fp32 recheck of near-ties (``recheck.py``); a batch is split over the cores (optional extra
``shunted-paddle[openvino]``).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ShuntedError
from .layout import onnx_file
from .recheck import DEFAULT_MARGIN, Predictor, with_fp32_recheck


def _openvino_runner(path: Path, threads: int, precision: str) -> tuple[Predictor, int]:
    """(predict, number of outputs) of OpenVINO's CPU plugin on an ONNX file at ``precision`` ("f32"/"bf16").

    A batch of at least ``threads`` images is split into ``threads`` parts that run at the same time, one
    single-threaded stream each: Shunted's many small ops (layer norms, reshapes, softmax over a few hundred keys)
    scale poorly over threads, and images do not depend on each other. Each part size gets its own compiled model
    with a static shape (compiled on first use, ~0.5 s), which OpenVINO runs ~10 % faster than the export's dynamic
    batch. Smaller batches (and the few rows of a bf16 recheck) run on one dynamic-batch model with every thread.
    """
    import openvino as ov

    core = ov.Core()
    # OpenVINO pins its threads to cores, counting from the first, in every process: two processes of one
    # thread each (paddle.distributed.launch) would share one core. Pin only when this process may use them all.
    core.set_property("CPU", {"ENABLE_CPU_PINNING": threads >= (os.cpu_count() or 1)})
    model = core.read_model(str(path))
    input_name = model.inputs[0].get_any_name()
    n_outputs = len(model.outputs)
    whole = core.compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": precision,
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        },
    ).create_infer_request()
    compiled: dict[tuple[int, int], list] = {}  # (part size, parts of that size) → infer requests

    def requests(size: int, count: int) -> list:
        """``count`` infer requests of a model compiled for ``size`` images, ``count`` single-thread streams."""
        key = (size, count)
        if key not in compiled:
            # Many distinct batch sizes (predict on folders): keep memory bounded.
            if len(compiled) >= 8:
                compiled.clear()
            static = model.clone()
            shape = static.inputs[0].get_partial_shape()
            shape[0] = size
            static.reshape({input_name: shape})
            config = {
                "INFERENCE_PRECISION_HINT": precision,
                "NUM_STREAMS": count,
                "INFERENCE_NUM_THREADS": count,
                "PERFORMANCE_HINT": "THROUGHPUT",
            }
            network = core.compile_model(static, "CPU", config)
            compiled[key] = [network.create_infer_request() for _ in range(count)]
        return compiled[key]

    def outputs(req) -> list[np.ndarray]:
        return [req.get_output_tensor(i).data.copy() for i in range(n_outputs)]

    def predict(x: np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if threads < 2 or len(x) < threads:
            whole.infer({0: x})
            result = outputs(whole)
        else:
            parts = np.array_split(x, threads)
            free = {size: list(requests(size, count)) for size, count in Counter(map(len, parts)).items()}
            running = []
            for part in parts:
                req = free[len(part)].pop()
                req.start_async({0: part})
                running.append(req)
            for req in running:
                req.wait()
            done = [outputs(req) for req in running]
            result = [np.concatenate([d[i] for d in done]) for i in range(n_outputs)]
        return result[0] if n_outputs == 1 else result

    return predict, n_outputs


def openvino_predictor(
    export_dir: str | os.PathLike, threads: int, bf16: bool = False, recheck_margin: float = DEFAULT_MARGIN
) -> Predictor:
    """OpenVINO (CPU) on an ONNX export; with ``bf16``, near-tie logits rows are recomputed in fp32."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        raise ShuntedError(
            "--backend openvino needs the optional packages: pip install 'shunted-paddle[openvino]'"
        ) from exc
    path = onnx_file(export_dir)
    run, n_outputs = _openvino_runner(path, threads, "bf16" if bf16 else "f32")
    if not bf16 or n_outputs != 1:
        return run
    return with_fp32_recheck(run, _openvino_runner(path, threads, "f32")[0], recheck_margin)
