"""The ``openvino`` / ``openvino_bf16`` runtimes: OpenVINO's CPU plugin on an ONNX export, fp32 or bfloat16.

Every batch runs on a model compiled for its exact shape (static shapes run ~10 % faster than the export's
dynamic batch, and are what OpenVINO can cache): a batch of at least ``threads`` images is split into ``threads``
parts that run at the same time, one single-threaded stream each; a smaller batch (one image: a lone request)
runs on one stream with every thread. A batch (of at least ``threads`` images) smaller than one already compiled
for, by at most half, is padded to it and the padded rows dropped (the last partial batch of a run reuses the full batch's model instead of
compiling another). With ``compile_cache`` (``shunted/runtime/cache.py``) OpenVINO keeps the compiled models on
disk (``CACHE_DIR``), so a second process loads them instead of compiling.

The bf16 one recomputes near-ties in fp32 (``recheck.py``) and runs a graph in which every depthwise residual
``x + dwconv(x)`` of the feed-forward is folded into the depthwise kernel (centre tap + 1: the same function, one
op and one pass over the tensor fewer), done here on the model OpenVINO read, so the export and its parity check
are untouched; the fp32 model is never folded (OpenVINO is a dependency of the package).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ShuntedError
from .layout import onnx_file
from .recheck import DEFAULT_MARGIN, Predictor, with_fp32_recheck

MAX_COMPILED = 8  # compiled shapes kept per runner (predict on folders of odd sizes: memory stays bounded)


def _source(output):
    """The output feeding ``output`` once Identity nodes are skipped."""
    while output.get_node().get_type_name() == "Identity":
        output = output.get_node().input_value(0)
    return output


def _consumer(output):
    """The one input reading ``output`` once Identity nodes are skipped, or None when there are several."""
    while True:
        users = list(output.get_target_inputs())
        if len(users) != 1:
            return None
        if users[0].get_node().get_type_name() != "Identity":
            return users[0]
        output = users[0].get_node().output(0)


def fold_depthwise_residuals(model) -> int:
    """Rewrite every ``x + (dwconv3x3(x) + bias)`` of ``model`` (an ``openvino.Model``) as ``dwconv'(x) + bias``
    with the kernel's centre tap increased by 1; returns how many were folded.

    Only a stride-1, dilation-1, padding-1 3×3 depthwise ``GroupConvolution`` whose kernel is a constant (after
    constant folding) and whose result feeds exactly one bias ``Add`` is folded.
    """
    import openvino.opset13 as ops
    from openvino.passes import ConstantFolding, Manager

    manager = Manager()
    manager.register_pass(ConstantFolding())
    manager.run_passes(model)
    folded = 0
    for conv in model.get_ops():
        if conv.get_type_name() != "GroupConvolution":
            continue
        attrs = conv.get_attributes()
        kernel = conv.input_value(1).get_node()
        if (
            kernel.get_type_name() != "Constant"
            or list(attrs["strides"]) != [1, 1]
            or list(attrs["dilations"]) != [1, 1]
            or list(attrs["pads_begin"]) != [1, 1]
            or list(attrs["pads_end"]) != [1, 1]
        ):
            continue
        weights = kernel.get_data()
        if weights.ndim != 5 or weights.shape[1:] != (1, 1, 3, 3):
            continue
        bias = _consumer(conv.output(0))
        if bias is None or bias.get_node().get_type_name() != "Add":
            continue
        bias_add = bias.get_node()
        use = _consumer(bias_add.output(0))
        if use is None or use.get_node().get_type_name() != "Add":
            continue
        residual = use.get_node()
        if _source(residual.input_value(1 - use.get_index())) != _source(conv.input_value(0)):
            continue
        new = np.array(weights, dtype=weights.dtype, copy=True)
        new[:, 0, 0, 1, 1] += 1
        conv.input(1).replace_source_output(ops.constant(new).output(0))
        residual.output(0).replace(bias_add.output(0))
        folded += 1
    if folded:
        model.validate_nodes_and_infer_types()
    return folded


def _openvino_runner(
    path: Path, threads: int, precision: str, cache_dir: str | os.PathLike | None = None, fold: bool = False
) -> tuple[Predictor, int]:
    """(predict, number of outputs) of OpenVINO's CPU plugin on an ONNX file at ``precision`` ("f32"/"bf16").

    See the module docstring for the shapes, streams and threads; ``fold``: fold the depthwise residuals.
    """
    import openvino as ov

    core = ov.Core()
    # OpenVINO pins its threads to cores, counting from the first, in every process: two processes of one
    # thread each (paddle.distributed.launch) would share one core. Pin only when this process may use them all.
    core.set_property("CPU", {"ENABLE_CPU_PINNING": threads >= (os.cpu_count() or 1)})
    if cache_dir is not None:
        core.set_property({"CACHE_DIR": str(cache_dir)})
    model = core.read_model(str(path))
    if fold:
        fold_depthwise_residuals(model)
    input_name = model.inputs[0].get_any_name()
    n_outputs = len(model.outputs)
    compiled: dict[tuple[int, int], list] = {}  # (part size, parts of that size) → infer requests
    totals: set[int] = set()  # batch sizes that have their compiled models

    def requests(size: int, count: int) -> list:
        """``count`` infer requests of a model compiled for ``size`` images: ``count`` single-thread streams, or
        (``count`` 1) one stream with every thread."""
        key = (size, count)
        if key not in compiled:
            if len(compiled) >= MAX_COMPILED:
                compiled.clear()
                totals.clear()
            static = model.clone()
            shape = static.inputs[0].get_partial_shape()
            shape[0] = size
            static.reshape({input_name: shape})
            streams, per_stream = (count, 1) if count > 1 else (1, threads)
            config = {
                "INFERENCE_PRECISION_HINT": precision,
                "NUM_STREAMS": streams,
                "INFERENCE_NUM_THREADS": streams * per_stream,
                "PERFORMANCE_HINT": "THROUGHPUT" if count > 1 else "LATENCY",
            }
            network = core.compile_model(static, "CPU", config)
            compiled[key] = [network.create_infer_request() for _ in range(count)]
        return compiled[key]

    def outputs(req) -> list[np.ndarray]:
        return [req.get_output_tensor(i).data.copy() for i in range(n_outputs)]

    def run(x: np.ndarray) -> list[np.ndarray]:
        parts = np.array_split(x, threads) if threads > 1 and len(x) >= threads else [x]
        count = len(parts)
        free = {size: list(requests(size, n)) for size, n in Counter(map(len, parts)).items()}
        totals.add(len(x))
        running = []
        for part in parts:
            req = free[len(part)].pop()
            req.start_async({0: part})
            running.append(req)
        for req in running:
            req.wait()
        if count == 1:
            return outputs(running[0])
        done = [outputs(req) for req in running]
        return [np.concatenate([d[i] for d in done]) for i in range(n_outputs)]

    def predict(x: np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = len(x)
        if n not in totals and n >= threads:
            # a compiled batch at most twice as large: pad to it (cheaper than compiling another shape); not a
            # batch smaller than the thread count (a lone image): it has its own latency model
            larger = [m for m in totals if n < m <= 2 * n]
            if larger:
                m = min(larger)
                padded = np.concatenate([x, np.zeros((m - n, *x.shape[1:]), np.float32)])
                result = [y[:n] for y in run(padded)]
                return result[0] if n_outputs == 1 else result
        result = run(x)
        return result[0] if n_outputs == 1 else result

    return predict, n_outputs


def openvino_predictor(
    export_dir: str | os.PathLike,
    threads: int,
    bf16: bool = False,
    recheck_margin: float = DEFAULT_MARGIN,
    compile_cache: str | os.PathLike | None = None,
) -> Predictor:
    """OpenVINO (CPU) on an ONNX export; with ``bf16``, near-tie logits rows are recomputed in fp32."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        raise ShuntedError(
            "--backend openvino needs OpenVINO, a dependency of shunted-paddle: pip install openvino"
        ) from exc
    path = onnx_file(export_dir)
    run, n_outputs = _openvino_runner(path, threads, "bf16" if bf16 else "f32", compile_cache, fold=bf16)
    if not bf16 or n_outputs != 1:
        return run
    exact = _openvino_runner(path, threads, "f32", compile_cache)[0]
    return with_fp32_recheck(run, exact, recheck_margin)
