"""The CPU runtimes behind one interface: ``make_predictor(backend, source, threads)`` → ``f(x) -> y``.

``x`` is an NCHW float32 array; ``y`` the logits (or, for a ``--features`` export, the list of stage maps).
One module per runtime:

- ``dygraph`` (``dygraph.py``): the Paddle model itself (``source`` is a model).
- ``inference`` / ``inference_bf16`` (``paddle_inference.py``): Paddle Inference with oneDNN on a Paddle export,
  fp32 or bfloat16.
- ``onnxruntime`` (``onnxruntime.py``): ONNX Runtime on an ONNX export (optional extra ``shunted-paddle[onnx]``).
- ``openvino`` / ``openvino_bf16`` (``openvino.py``): OpenVINO's CPU plugin on the same ONNX export
  (a dependency of the package).

The ``*_bf16`` backends recompute near-tie rows in fp32 (``recheck.py``, margin ``recheck_margin``). The static
runtimes read the export folder layout of ``layout.py``; a segmentation export (``export.json`` ``pad_to``) takes
any input height and width (``padding.py``). This package never imports ``shunted.engine``: turning
a model into a temporary export for a static runtime is ``shunted/engine/session.py``'s ``model_predictor``.
``cache.py`` keeps exports and compiled models between runs (the start-up cache). ``torch_reference.py`` /
``torch_worker.py`` are the PyTorch yardstick of ``shunted bench`` (torch is optional).
"""

from __future__ import annotations

import os

from ..errors import ShuntedError
from .recheck import DEFAULT_MARGIN, Predictor

__all__ = ["BACKENDS", "DEFAULT_MARGIN", "ONNX_BACKENDS", "Predictor", "make_predictor"]

BACKENDS = ("dygraph", "inference", "inference_bf16", "onnxruntime", "openvino", "openvino_bf16")
# The backends that run the ONNX export (the others run a Paddle export), with the package each one needs.
ONNX_BACKENDS = {"onnxruntime": "onnxruntime", "openvino": "openvino", "openvino_bf16": "openvino"}
# The PyTorch yardstick of ``shunted bench`` (torch_worker.py): eager and torch.compile.
TORCH_BACKENDS = ("torch", "torch_compile")
BENCH_BACKENDS = BACKENDS + TORCH_BACKENDS
DEFAULT_BENCH_BACKENDS = (*BACKENDS, "torch")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ShuntedError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")


def make_predictor(
    backend: str,
    source,
    threads: int | None = 2,
    recheck_margin: float = DEFAULT_MARGIN,
    compile_cache: str | os.PathLike | None = None,
) -> Predictor:
    """A callable NCHW float32 array → output array(s) for ``backend``.

    source: a Paddle model for ``dygraph``; an export directory for the others (``inference*``: a Paddle export;
    ``onnxruntime``, ``openvino*``: an ONNX export or a ``.onnx`` file).
    threads: CPU threads; None = every core (dygraph: leave Paddle's setting alone).
    recheck_margin: ``*_bf16``: rows whose top-2 gap is below this many logit standard deviations are
    recomputed in fp32 (0 = plain bf16).
    compile_cache: ``openvino*``: a folder where OpenVINO keeps its compiled models between runs (``CACHE_DIR``).
    """
    check_backend(backend)
    is_path = isinstance(source, (str, os.PathLike))
    if backend == "dygraph":
        if is_path:
            raise ShuntedError(f"--backend dygraph needs a model, not the export {source}")
        from .dygraph import dygraph_predictor

        return dygraph_predictor(source, threads)
    if not is_path:
        raise TypeError(
            f"{backend} runs an export folder; for a model use shunted.engine.session.model_predictor"
        )
    if threads is None:
        threads = os.cpu_count() or 1
    bf16 = backend.endswith("_bf16")
    if backend == "onnxruntime":
        from .onnxruntime import onnxruntime_predictor

        predict = onnxruntime_predictor(source, threads)
    elif backend.startswith("openvino"):
        from .openvino import openvino_predictor

        predict = openvino_predictor(
            source, threads, bf16=bf16, recheck_margin=recheck_margin, compile_cache=compile_cache
        )
    else:
        from .paddle_inference import inference_predictor

        predict = inference_predictor(source, threads, bf16=bf16, recheck_margin=recheck_margin)
    from .layout import read_info

    info = read_info(source)
    if info is not None and info.pad_to:  # a segmentation export: any input size (padding.py)
        from .padding import padded_predictor

        predict = padded_predictor(predict, info.pad_to)
    return predict
