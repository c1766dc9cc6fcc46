"""One small interface over the CPU runtimes: ``make_predictor(backend, source, threads)`` → ``f(x) -> y``.

``x`` is an NCHW float32 array; ``y`` the logits (or, for a ``--features`` export, the list of stage maps).

- ``dygraph``: the Paddle model itself (``source`` is a model).
- ``inference``: Paddle Inference with oneDNN (``source`` is a Paddle export directory, or a model that is exported
  to a temporary directory first). Two oneDNN fusion passes are deleted: on Shunted, Paddle 3.3.1 mis-fuses
  ``reshape_transpose_matmul_fuse_pass`` (conv → reshape([0, C, -1]) → transpose → Linear) and
  ``matmul_transpose_reshape_fuse_pass`` (the stage-4 attention) — logits off by up to 0.2. See
  ``tools/onednn_fusion_repro.py``; ``tests/engine/test_backends.py`` notices when an upgrade changes that.
- ``inference_bf16``: the same with oneDNN bfloat16 kernels (AVX-512 BF16 / AMX CPUs), plus an fp32 recheck:
  rows whose top-2 logit margin is below ``BF16_RECHECK_MARGIN`` logit standard deviations are recomputed by the
  fp32 predictor. bf16 moves a logit by up to ~0.055 std (shunted_t, CIFAR-10 demo checkpoint), so only
  near-ties can change class; with the PIR predictor of Paddle 3.3.1 the op set of bf16 cannot be chosen
  (``set_bfloat16_op`` / ``set_onednn_op`` change nothing), so the near-ties are rechecked instead.
- ``onnxruntime``: ONNX Runtime on a ``model.onnx`` export (optional extra ``shunted-paddle[onnx]``).
- ``openvino`` / ``openvino_bf16``: OpenVINO's CPU plugin on the same ONNX export, fp32 or bfloat16 (with the
  same fp32 recheck of near-ties); a batch is split over the cores (optional extra ``shunted-paddle[openvino]``).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ShuntedError

BACKENDS = ("dygraph", "inference", "inference_bf16", "onnxruntime", "openvino", "openvino_bf16")
# The backends that run the ONNX export (the others run a Paddle export), with the package each one needs.
ONNX_BACKENDS = {"onnxruntime": "onnxruntime", "openvino": "openvino", "openvino_bf16": "openvino"}
# Paddle 3.3.1 oneDNN passes that produce wrong Shunted outputs (see the module docstring).
BROKEN_ONEDNN_PASSES = ("reshape_transpose_matmul_fuse_pass", "matmul_transpose_reshape_fuse_pass")
# With bfloat16, fusing the unsqueeze of the feed-forward's 1×1-conv weight drops its two unit dimensions
# (predictor creation fails: "filter's shape is [512, 64]").
BROKEN_ONEDNN_BF16_PASSES = ("operator_unsqueeze_onednn_fuse_pass",)

# inference_bf16: logits rows whose top-2 margin is below this many row standard deviations are recomputed in
# fp32 (0 = never). Measured on the CIFAR-10 test split (benchmarks/bf16_agreement.py): top-1 agreement with fp32
# ≥ 99.99 % at 0.05 (plain bf16: 99.8–99.9 %) for 0.5–3 % of the rows recomputed; 0.15 also covers the largest
# single-logit change seen (0.055 std) but recomputes 1.5–9 % of the rows. See benchmarks/README.md.
BF16_RECHECK_MARGIN = 0.05

Predictor = Callable[[np.ndarray], "np.ndarray | list[np.ndarray]"]


def set_paddle_threads(threads: int) -> None:
    """CPU threads of Paddle's dygraph kernels (oneDNN / OpenMP / MKL)."""
    import paddle

    paddle.base.core.set_num_threads(int(threads))


def dygraph_predictor(model, threads: int | None = None) -> Predictor:
    """The Paddle model itself, in eval mode under ``paddle.no_grad()`` (a list of arrays for feature models)."""
    import paddle

    model.eval()

    def predict(x: np.ndarray):
        if threads is not None:
            # Again at every call: running a Paddle Inference predictor leaves this thread's OpenMP at 1 thread.
            set_paddle_threads(threads)
        with paddle.no_grad():
            out = model(paddle.to_tensor(np.ascontiguousarray(x, dtype=np.float32)))
        if isinstance(out, (list, tuple)):
            return [o.numpy() for o in out]
        return out.numpy()

    return predict


def inference_config(export_dir: str | os.PathLike, threads: int, bf16: bool = False):
    """A CPU ``paddle.inference.Config`` for a Paddle export: oneDNN on, the two broken passes deleted."""
    import paddle.inference as pi

    from .export import paddle_files

    json_path, params_path = paddle_files(export_dir)
    if not json_path.is_file():
        raise ShuntedError(
            f"{export_dir}: no {json_path.name}; export it with `shunted export --format paddle`"
        )
    config = pi.Config(str(json_path), str(params_path))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(int(threads))
    config.enable_onednn()
    if bf16:
        config.enable_onednn_bfloat16()
    config.switch_ir_optim(True)
    config.disable_glog_info()
    for name in BROKEN_ONEDNN_PASSES + (BROKEN_ONEDNN_BF16_PASSES if bf16 else ()):
        config.delete_pass(name)
    return config


def _paddle_runner(config) -> tuple[Predictor, int]:
    """(predict, number of outputs) of one Paddle Inference predictor."""
    import paddle.inference as pi

    predictor = pi.create_predictor(config)
    (input_name,) = predictor.get_input_names()
    handle = predictor.get_input_handle(input_name)
    outputs = [predictor.get_output_handle(n) for n in predictor.get_output_names()]

    def predict(x: np.ndarray):
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
        predictor.run()
        result = [o.copy_to_cpu() for o in outputs]
        return result[0] if len(result) == 1 else result

    return predict, len(outputs)


def uncertain_rows(logits: np.ndarray, margin: float) -> np.ndarray:
    """Indices of the rows whose top-2 logit gap is below ``margin`` standard deviations of the row."""
    if margin <= 0 or logits.ndim != 2 or logits.shape[1] < 2:
        return np.zeros(0, dtype=np.int64)
    top2 = np.partition(logits, -2, axis=1)[:, -2:]
    gap = np.abs(top2[:, 1] - top2[:, 0])
    return np.flatnonzero(gap < margin * logits.std(axis=1))


def with_fp32_recheck(run: Predictor, exact: Predictor) -> Predictor:
    """``run`` (a bf16 logits predictor) whose near-tie rows (:func:`uncertain_rows`) are recomputed by ``exact``.

    Rows are recomputed one at a time, so ``exact`` only ever sees batches of one: the runtimes prepare their
    kernels per input shape (OpenVINO: ~0.7 s the first time a shape comes), and the first call prepares that
    one shape before anything is timed. The returned callable counts its work in ``predict.stats`` (``rows``,
    ``rechecked``) for reports.
    """
    stats = {"rows": 0, "rechecked": 0}
    ready = []

    def predict(x: np.ndarray):
        if not ready:
            exact(np.ascontiguousarray(x[:1]))
            ready.append(True)
        y = run(x)
        rows = uncertain_rows(y, BF16_RECHECK_MARGIN)
        for row in rows:
            y[row] = exact(np.ascontiguousarray(x[row : row + 1]))[0]
        stats["rows"] += len(y)
        stats["rechecked"] += int(rows.size)
        return y

    predict.stats = stats
    return predict


def inference_predictor(export_dir: str | os.PathLike, threads: int, bf16: bool = False) -> Predictor:
    """Paddle Inference; with ``bf16``, near-tie rows of a logits output are recomputed in fp32 (see above)."""
    run, n_outputs = _paddle_runner(inference_config(export_dir, threads, bf16))
    if not bf16 or n_outputs != 1:
        return run  # a --features export: no class decision to protect
    return with_fp32_recheck(run, _paddle_runner(inference_config(export_dir, threads))[0])


def onnx_file(export_dir: str | os.PathLike) -> Path:
    """The ``model.onnx`` of an ONNX export directory (or the file itself)."""
    from .export import ONNX_FILE

    path = Path(export_dir) / ONNX_FILE if Path(export_dir).is_dir() else Path(export_dir)
    if not path.is_file():
        raise ShuntedError(f"{export_dir}: no {ONNX_FILE}; export it with `shunted export --format onnx`")
    return path


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


def openvino_predictor(export_dir: str | os.PathLike, threads: int, bf16: bool = False) -> Predictor:
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
    return with_fp32_recheck(run, _openvino_runner(path, threads, "f32")[0])


def make_predictor(backend: str, source, threads: int | None = 2, img_size: int = 224) -> Predictor:
    """A callable NCHW float32 array → output array(s) for ``backend``.

    source: a Paddle model (any backend; the static backends export it to a temporary folder at ``img_size``) or
    an export directory (``inference*``: a Paddle export; ``onnxruntime``, ``openvino*``: an ONNX export or a
    ``.onnx`` file).
    threads: CPU threads; None = every core (dygraph: leave Paddle's setting alone).
    """
    if threads is None and backend != "dygraph":
        threads = os.cpu_count() or 1
    if backend not in BACKENDS:
        raise ShuntedError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    is_model = not isinstance(source, (str, os.PathLike))
    if backend == "dygraph":
        if not is_model:
            raise ShuntedError(f"--backend dygraph needs a model, not the export {source}")
        return dygraph_predictor(source, threads)
    if is_model:
        from .export import save_onnx, save_paddle

        # Both runtimes read the files completely when the predictor is created.
        with tempfile.TemporaryDirectory(prefix=f"shunted-{backend}-") as folder:
            (save_onnx if backend in ONNX_BACKENDS else save_paddle)(source, folder, img_size)
            return make_predictor(backend, folder, threads)
    bf16 = backend.endswith("_bf16")
    if backend == "onnxruntime":
        return onnxruntime_predictor(source, threads)
    if backend.startswith("openvino"):
        return openvino_predictor(source, threads, bf16=bf16)
    return inference_predictor(source, threads, bf16=bf16)


def add_backend_arguments(parser) -> None:
    """``--backend`` and ``--threads`` for the commands that run a model (eval, predict)."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="dygraph",
        help="runtime (default dygraph); the static ones export the model to a temporary folder first",
    )
    from ..commands.common import positive_int

    parser.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads (default: every core)"
    )


def checkpoint_predictor(
    backend: str,
    model_name: str,
    weights,
    img_size: int | None = None,
    threads: int | None = None,
    num_classes: int | None = None,
) -> tuple[Predictor, int]:
    """(predict, num_classes) of ``create_model(model_name, pretrained=weights)`` on ``backend`` (for eval)."""
    from ..errors import WeightsError
    from ..factory import create_model
    from ..models import get_pretrained_cfg

    model = create_model(model_name, pretrained=weights)
    if num_classes is not None and num_classes != model.num_classes:
        raise WeightsError(f"{weights}: has {model.num_classes} classes, but --num-classes is {num_classes}")
    size = img_size or get_pretrained_cfg(model_name).input_size[-1]
    return make_predictor(backend, model, threads, img_size=size), model.num_classes
