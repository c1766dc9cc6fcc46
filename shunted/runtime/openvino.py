"""The ``openvino`` / ``openvino_bf16`` runtimes: OpenVINO's CPU plugin on an ONNX export, fp32 or bfloat16.

Every part of a batch runs on a model compiled for its exact shape (static shapes run ~10 % faster than the
export's dynamic batch, and are what OpenVINO can cache): a batch of at least ``threads`` images is cut into
parts of at most ``PART`` images (fewer when the batch is small: every stream gets a part), which run
``threads`` at a time, one single-threaded stream each; a smaller batch (one image: a lone request) runs on one
stream with every thread. A last part that is short is padded with zeros and its extra rows dropped; so is a
batch whose parts would be smaller than a part size already compiled for, when that at most doubles its work
(the last partial batch of a run reuses the full batch's model instead of compiling another). With
``compile_cache`` (``shunted/runtime/cache.py``) OpenVINO keeps the compiled models on disk (``CACHE_DIR``), so a
second process loads them instead of compiling.

The bf16 one recomputes near-ties in fp32 (``recheck.py``) on one dynamic-batch fp32 model, and runs a graph in
which every depthwise residual ``x + dwconv(x)`` of the feed-forward is folded into the depthwise kernel (centre
tap + 1: the same function, one op and one pass over the tensor fewer), done here on the model OpenVINO read, so
the export and its parity check are untouched; the fp32 model is never folded (OpenVINO is a dependency of the
package).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ShuntedError
from .layout import onnx_file
from .recheck import DEFAULT_MARGIN, Predictor, with_fp32_recheck

MAX_COMPILED = 8  # compiled shapes kept per runner (predict on folders of odd sizes: memory stays bounded)
# Images per stream call. A batch runs as parts of at most this many images, one part per stream at a time:
# shunted_t at 224², 2 streams (AMD Zen 5, no AMX), img/s by part size 1/2/4/8/16/32 — bf16 137/150/150/148/145/141,
# fp32 76/79/77/74/72/68; on a Xeon with AMX, 8 ran 6 % faster than 4 (issue 22). A batch of 64 runs 5–9 % faster
# as 8 parts of 8 than as 2 of 32, and every batch size from 16 up runs on the one model compiled for 8.
PART = 8


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


def cpu_core(threads: int, cache_dir: str | os.PathLike | None):
    """OpenVINO's ``Core`` for a runtime of ``threads`` threads, compiled blobs kept in ``cache_dir``."""
    import openvino as ov

    core = ov.Core()
    # OpenVINO pins its threads to cores, counting from the first, in every process: two processes of one
    # thread each (paddle.distributed.launch) would share one core. Pin only when this process may use them all.
    core.set_property("CPU", {"ENABLE_CPU_PINNING": threads >= (os.cpu_count() or 1)})
    if cache_dir is not None:
        core.set_property({"CACHE_DIR": str(cache_dir)})
    return core


def static_requests(core, model, part: int, streams: int, threads: int, precision: str) -> list:
    """The infer requests of ``model`` compiled for ``part`` images at ``precision``: ``streams`` single-thread
    streams (one request each), or (``streams`` 1) one stream with ``threads`` threads (module docstring)."""
    static = model.clone()
    shape = static.inputs[0].get_partial_shape()
    shape[0] = part
    static.reshape({static.inputs[0].get_any_name(): shape})
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "NUM_STREAMS": streams,
        "INFERENCE_NUM_THREADS": streams if streams > 1 else threads,
        "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
    }
    network = core.compile_model(static, "CPU", config)
    return [network.create_infer_request() for _ in range(streams)]


def _openvino_runner(core, model, threads: int, precision: str) -> tuple[Predictor, int]:
    """(predict, number of outputs) of OpenVINO's CPU plugin (``core``) on ``model`` (an ``openvino.Model``) at
    ``precision`` ("f32"/"bf16"). See the module docstring for the shapes, streams and threads.
    """
    n_outputs = len(model.outputs)
    compiled: dict[tuple[int, int], list] = {}  # (part size, streams) → one infer request per stream

    def requests(part: int, streams: int) -> list:
        """``static_requests`` for ``part`` images on ``streams`` streams, compiled once (``MAX_COMPILED``)."""
        key = (part, streams)
        if key not in compiled:
            if len(compiled) >= MAX_COMPILED:
                compiled.clear()
            compiled[key] = static_requests(core, model, part, streams, threads, precision)
        return compiled[key]

    def plan(n: int) -> tuple[int, int]:
        """(part size, streams) for a batch of ``n`` images (module docstring)."""
        if threads == 1:
            return min(n, PART), 1
        if n < threads:
            return n, 1  # a lone image: one stream with every thread
        part = min(PART, -(-n // threads))
        # a part size already compiled for, if padding to it at most doubles the work (the last partial batch)
        larger = [p for p, s in compiled if s == threads and part < p and -(-n // p) * p <= 2 * n]
        return (min(larger) if larger else part), threads

    def outputs(req) -> list[np.ndarray]:
        return [req.get_output_tensor(i).data.copy() for i in range(n_outputs)]

    def predict(x: np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = len(x)
        part, streams = plan(n)
        reqs = requests(part, streams)
        parts = -(-n // part)
        if parts * part > n:  # zero rows, dropped below
            x = np.concatenate([x, np.zeros((parts * part - n, *x.shape[1:]), np.float32)])
        done: list = [None] * parts
        busy: dict[int, int] = {}  # request → the part it runs
        for i in range(parts):
            r = i % len(reqs)
            if r in busy:
                reqs[r].wait()
                done[busy.pop(r)] = outputs(reqs[r])
            reqs[r].start_async({0: x[i * part : (i + 1) * part]})
            busy[r] = i
        for r, i in busy.items():
            reqs[r].wait()
            done[i] = outputs(reqs[r])
        result = [
            np.concatenate([d[k] for d in done])[:n] if parts > 1 else done[0][k][:n]
            for k in range(n_outputs)
        ]
        return result[0] if n_outputs == 1 else result

    return predict, n_outputs


def _openvino_dynamic_runner(core, model, threads: int) -> Predictor:
    """OpenVINO fp32 on ``model`` as exported (dynamic batch): one model, compiled once, for any number of images
    on one stream with every thread — the fp32 recheck's runtime (a few rows per batch, in varying counts).

    Measured (shunted_t, 224², 2 cores): a row costs ~1.35× a static model's, but a static model per count
    costs 0.2–0.4 s to compile or read from the cache, more than a 1,000-image run's rechecks take."""
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    request = core.compile_model(model, "CPU", config).create_infer_request()

    def predict(x: np.ndarray) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return request.get_output_tensor(0).data.copy()

    return predict


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
    core = cpu_core(threads, compile_cache)
    model = core.read_model(str(onnx_file(export_dir)))  # read once: the bf16 runner folds a copy
    if not bf16:
        return _openvino_runner(core, model, threads, "f32")[0]
    folded = model.clone()
    fold_depthwise_residuals(folded)
    run, n_outputs = _openvino_runner(core, folded, threads, "bf16")
    if n_outputs != 1:
        return run
    return with_fp32_recheck(
        run, _openvino_dynamic_runner(core, model, threads), recheck_margin, buckets=False
    )
