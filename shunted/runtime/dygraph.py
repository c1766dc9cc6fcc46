"""The ``dygraph`` runtime: the Paddle model itself (eager mode)."""

from __future__ import annotations

import numpy as np

from .recheck import Predictor


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


def dygraph_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    """The dygraph model's outputs on ``x``, always as a list (one array per output)."""
    out = dygraph_predictor(model)(x)
    return out if isinstance(out, list) else [out]
