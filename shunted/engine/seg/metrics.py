"""Segmentation metrics: a K×K pixel confusion matrix and the scores read from it.

    cm = ConfusionMatrix(num_classes=11, ignore_index=11)
    cm.update(pred, label)            # int arrays of one shape (H×W, N×H×W, ...); label pixels == ignore_index dropped
    scores = seg_scores(cm.matrix)    # dict, JSON-ready (floats in percent, None where undefined)

``matrix[i, j]`` counts pixels whose **label** is ``i`` and whose **prediction** is ``j`` (rows = label), int64,
accumulated with ``numpy.bincount``. Per class k, with TP = ``matrix[k, k]``, label area = row sum, prediction
area = column sum, union = label area + prediction area − TP:

- ``class_iou[k]`` = 100·TP / union; ``None`` when the union is 0 (k absent from labels *and* predictions).
  A class absent from the labels but predicted somewhere has IoU 0.
- ``miou``: mean of the defined ``class_iou`` values — classes absent from both labels and predictions are left
  out of the mean. This is mmseg's convention (``mmseg/core/evaluation/metrics.py``: IoU = intersect / union gives
  NaN there, reduced with ``nanmean``) and the one ``shunted seg-eval`` reports as ``miou`` (``mean_over`` says so).
- ``miou_counting_absent_as_zero``: PaddleSeg's convention (``paddleseg/utils/metrics.py`` ``mean_iou``: a class
  with union 0 gets IoU 0 and the mean runs over all K classes). Equal to ``miou`` when every class appears; lower
  otherwise (e.g. on a subset of a split where rare classes do not occur).
- ``class_accuracy[k]`` = 100·TP / label area (per-class recall, mmseg's "Acc"); ``None`` when k is absent from the
  labels. ``mean_accuracy`` is their mean over classes present in the labels (mmseg's mAcc). Note PaddleSeg's
  ``class_precision`` (TP / prediction area) is a different quantity and is not reported here.
- ``pixel_accuracy`` = 100·ΣTP / Σmatrix, over the non-ignored pixels only (mmseg's aAcc, PaddleSeg's acc).

Label values other than ``ignore_index`` outside 0..K−1 are a DataError (usually a wrong ``--num-classes`` or
``--ignore-index``); prediction values outside 0..K−1 are a ValueError (a programming error: predictions come
from an argmax over K channels).
"""

from __future__ import annotations

import numpy as np

from ...errors import DataError

MEAN_OVER = "classes present in labels or predictions (mmseg)"
ABSENT_AS_ZERO = "all classes, a class absent from labels and predictions counting as IoU 0 (PaddleSeg)"


class ConfusionMatrix:
    """Pixel confusion matrix over ``num_classes`` classes, rows = label, columns = prediction (int64)."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, not {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[...] = 0

    def update(self, pred, label, where: str | None = None) -> None:
        """Add the pixels of one prediction/label pair (or batch); ``where`` names the label in a DataError."""
        pred = np.asarray(pred)
        label = np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
        k = self.num_classes
        label = label.astype(np.int64, copy=False).ravel()
        pred = pred.astype(np.int64, copy=False).ravel()
        if self.ignore_index is not None:
            keep = label != self.ignore_index
            label, pred = label[keep], pred[keep]
        if label.size == 0:
            return
        bad = (label < 0) | (label >= k)
        if bad.any():
            value = int(label[bad][0])
            ignore = f", ignore index {self.ignore_index}" if self.ignore_index is not None else ""
            raise DataError(
                f"{where or 'label'}: label value {value} is outside 0..{k - 1} ({k} classes{ignore}); "
                "check --num-classes and --ignore-index"
            )
        if pred.min() < 0 or pred.max() >= k:
            raise ValueError(
                f"prediction values must be in 0..{k - 1}, got {int(pred.min())}..{int(pred.max())}"
            )
        self.matrix += np.bincount(label * k + pred, minlength=k * k).reshape(k, k)

    def add(self, matrix) -> None:
        """Add another K×K count matrix (e.g. from another process)."""
        matrix = np.asarray(matrix)
        if matrix.shape != self.matrix.shape:
            raise ValueError(f"matrix shape {matrix.shape} differs from {self.matrix.shape}")
        self.matrix += matrix.astype(np.int64)

    def scores(self) -> dict:
        return seg_scores(self.matrix)


def _percent(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [None if d == 0 else 100.0 * float(n) / float(d) for n, d in zip(num, den, strict=True)]


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def seg_scores(matrix) -> dict:
    """Scores of a K×K confusion matrix (rows = label); see the module docstring for each convention.

    Keys: ``miou``, ``miou_counting_absent_as_zero``, ``class_iou``, ``class_accuracy``, ``mean_accuracy``,
    ``pixel_accuracy`` (percent; None when undefined), ``absent_classes`` (absent from labels and predictions),
    ``classes_absent_from_labels``, ``mean_over``, ``miou_counting_absent_as_zero_over``, ``pixels``,
    ``num_classes``.
    """
    m = np.asarray(matrix, dtype=np.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"a confusion matrix is K×K, got shape {m.shape}")
    k = m.shape[0]
    tp = np.diag(m)
    label_area = m.sum(axis=1)
    pred_area = m.sum(axis=0)
    union = label_area + pred_area - tp
    class_iou = _percent(tp, union)
    class_accuracy = _percent(tp, label_area)
    total = int(m.sum())
    return {
        "miou": _mean(class_iou),
        "miou_counting_absent_as_zero": (
            float(np.mean([0.0 if v is None else v for v in class_iou])) if total else None
        ),
        "class_iou": class_iou,
        "class_accuracy": class_accuracy,
        "mean_accuracy": _mean(class_accuracy),
        "pixel_accuracy": 100.0 * float(tp.sum()) / total if total else None,
        "absent_classes": [i for i in range(k) if union[i] == 0],
        "classes_absent_from_labels": [i for i in range(k) if label_area[i] == 0],
        "mean_over": MEAN_OVER,
        "miou_counting_absent_as_zero_over": ABSENT_AS_ZERO,
        "pixels": total,
        "num_classes": k,
    }
