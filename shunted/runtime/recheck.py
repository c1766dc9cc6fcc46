"""The fp32 recheck of a bfloat16 logits predictor: near-tie rows are recomputed in fp32.

bf16 moves a logit by up to ~0.055 logit standard deviations (shunted_t, CIFAR-10 demo checkpoint), so only
near-ties can change class. With the PIR predictor of Paddle 3.3.1 the op set of bf16 cannot be chosen
(``set_bfloat16_op`` / ``set_onednn_op`` change nothing), so the near-ties are rechecked instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# An NCHW float32 array → logits (or, for a features export, the list of stage maps). numpy is imported where the
# arrays are handled, so that `shunted --help`, which lists the backends, does not load it.
Predictor = Callable[[Any], Any]

# Rows whose top-2 margin is below this many row standard deviations are recomputed in fp32 (0 = never).
# Measured on the CIFAR-10 test split (benchmarks/bf16_agreement.py): top-1 agreement with fp32 ≥ 99.99 % at 0.05
# (plain bf16: 99.8–99.9 %) for 0.5–3 % of the rows recomputed; 0.15 also covers the largest single-logit change
# seen (0.055 std) but recomputes 1.5–9 % of the rows. See benchmarks/README.md.
DEFAULT_MARGIN = 0.05


def uncertain_rows(logits: np.ndarray, margin: float) -> np.ndarray:
    """Indices of the rows whose top-2 logit gap is below ``margin`` standard deviations of the row."""
    import numpy as np

    if margin <= 0 or logits.ndim != 2 or logits.shape[1] < 2:
        return np.zeros(0, dtype=np.int64)
    top2 = np.partition(logits, -2, axis=1)[:, -2:]
    gap = np.abs(top2[:, 1] - top2[:, 0])
    return np.flatnonzero(gap < margin * logits.std(axis=1))


def bucket(rows: int) -> int:
    """The batch size ``rows`` recheck rows run at: the next power of two (a handful of shapes, each prepared once)."""
    return 1 << max(rows - 1, 0).bit_length()


def with_fp32_recheck(
    run: Predictor, exact: Predictor, margin: float = DEFAULT_MARGIN, buckets: bool = True
) -> Predictor:
    """``run`` (a bf16 logits predictor) whose near-tie rows (:func:`uncertain_rows`) are recomputed by ``exact``.

    The rows of one batch are recomputed together, in one call of ``exact``, so that a row costs a share of a
    batch instead of a single-image run. With ``buckets`` the call is padded with copies of the last row to a
    power of two (:func:`bucket`), for a runtime that prepares its kernels per input shape (Paddle Inference):
    a handful of shapes serve every count. Without, ``exact`` takes any count as it is (OpenVINO's recheck runs
    one dynamic-batch model). The first call prepares one row's shape before anything is timed. The returned callable
    counts its work in ``predict.stats`` (``rows``, ``rechecked``, ``calls``) for reports; ``predict.margin`` is
    the margin it uses.
    """
    import numpy as np

    stats = {"rows": 0, "rechecked": 0, "calls": 0}
    ready = []

    def predict(x: np.ndarray):
        if not ready:
            exact(np.ascontiguousarray(x[:1]))
            ready.append(True)
        y = run(x)
        rows = uncertain_rows(y, predict.margin)
        if rows.size:
            picked = x[rows]
            size = bucket(len(rows)) if buckets else len(rows)
            if size > len(rows):
                picked = np.concatenate([picked, np.repeat(picked[-1:], size - len(rows), axis=0)])
            y[rows] = exact(np.ascontiguousarray(picked))[: len(rows)]
            stats["calls"] += 1
        stats["rows"] += len(y)
        stats["rechecked"] += int(rows.size)
        return y

    predict.stats = stats
    predict.margin = float(margin)
    return predict
