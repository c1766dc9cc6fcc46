"""Segmentation metrics (shunted/engine/seg/metrics.py) against an independent per-class numpy reference.

The reference below loops over classes with boolean masks (no bincount, no confusion matrix) and states both
conventions directly: mmseg's mean over classes present in labels or predictions, PaddleSeg's mean over all
classes with an absent class counting as 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from shunted.engine.seg.metrics import MEAN_OVER, ConfusionMatrix, seg_scores
from shunted.errors import DataError


def reference_scores(pred, label, num_classes, ignore_index):
    pred = np.asarray(pred).ravel().astype(int)
    label = np.asarray(label).ravel().astype(int)
    valid = np.ones(label.shape, bool) if ignore_index is None else label != ignore_index
    p, t = pred[valid], label[valid]
    iou, acc = [], []
    for c in range(num_classes):
        inter = int(np.sum((p == c) & (t == c)))
        union = int(np.sum((p == c) | (t == c)))
        area = int(np.sum(t == c))
        iou.append(100.0 * inter / union if union else None)
        acc.append(100.0 * inter / area if area else None)
    defined = [v for v in iou if v is not None]
    confusion = np.array(
        [[np.sum((t == i) & (p == j)) for j in range(num_classes)] for i in range(num_classes)]
    )
    return {
        "class_iou": iou,
        "class_accuracy": acc,
        "miou": sum(defined) / len(defined),
        "miou_counting_absent_as_zero": sum(v or 0.0 for v in iou) / num_classes,
        "mean_accuracy": float(np.mean([v for v in acc if v is not None])),
        "pixel_accuracy": 100.0 * np.sum(p == t) / t.size,
        "confusion": confusion,
    }


def assert_same(scores, ref):
    for key in ("class_iou", "class_accuracy"):
        assert [v is None for v in scores[key]] == [v is None for v in ref[key]], key
        got = [v for v in scores[key] if v is not None]
        want = [v for v in ref[key] if v is not None]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=key)
    for key in ("miou", "miou_counting_absent_as_zero", "mean_accuracy", "pixel_accuracy"):
        assert scores[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-12), key


def random_case(seed, num_classes, ignore_index, shape=(3, 37, 53)):
    """uint8 labels with ~20 % ignore pixels; class 2 absent from labels and predictions (it is predicted only on
    ignored pixels, which must not count), the last class predicted but never labelled."""
    rng = np.random.default_rng(seed)
    labelled = [c for c in range(num_classes - 1) if c not in (2, ignore_index)]
    label = rng.choice(labelled, size=shape).astype(np.uint8)
    pred = np.where(rng.random(shape) < 0.6, label, rng.choice(labelled + [num_classes - 1], size=shape))
    ignore = rng.random(shape) < 0.2
    label[ignore] = ignore_index
    pred[ignore] = 2
    return pred.astype(np.int64), label


@pytest.mark.parametrize(("num_classes", "ignore_index"), [(7, 255), (11, 11), (150, 255), (6, 0)])
def test_scores_match_the_per_class_reference(num_classes, ignore_index):
    pred, label = random_case(num_classes, num_classes, ignore_index)
    cm = ConfusionMatrix(num_classes, ignore_index)
    for p, t in zip(pred, label, strict=True):  # accumulated image by image
        cm.update(p, t)
    ref = reference_scores(pred, label, num_classes, ignore_index)
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, ref["confusion"])
    scores = seg_scores(cm.matrix)
    assert_same(scores, ref)
    assert 2 in scores["absent_classes"] and scores["class_iou"][2] is None
    assert scores["class_iou"][num_classes - 1] == 0.0  # predicted, never labelled: IoU 0, in the mean
    assert scores["class_accuracy"][num_classes - 1] is None
    assert scores["pixels"] == int(np.sum(label != ignore_index))
    assert scores["mean_over"] == MEAN_OVER
    json.dumps(scores)  # JSON-ready: floats, ints, None


def test_ignore_pixels_matter_in_the_test_data():
    """Mutation check: had the ignore pixels been counted, the reference would differ (the test above has teeth)."""
    pred, label = random_case(0, 7, 255)
    cm = ConfusionMatrix(7, 255)
    cm.update(pred, label)
    scores = seg_scores(cm.matrix)
    counted = reference_scores(pred, label, 7, ignore_index=None)
    assert counted["miou"] != pytest.approx(scores["miou"])
    assert counted["class_iou"][2] == 0.0 and scores["class_iou"][2] is None
    assert counted["pixel_accuracy"] != pytest.approx(scores["pixel_accuracy"])


def test_hand_computed_example():
    # K = 3, ignore 255. Label / prediction pixels (ignored pixel predicted as 2 must not count):
    label = np.array([[0, 0, 1, 1], [0, 255, 1, 0]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 2, 2, 0]])
    cm = ConfusionMatrix(3, 255)
    cm.update(pred, label)
    # rows = label: label 0 -> pred {0: 3, 1: 1}; label 1 -> pred {1: 2, 2: 1}; label 2: none
    np.testing.assert_array_equal(cm.matrix, [[3, 1, 0], [0, 2, 1], [0, 0, 0]])
    s = seg_scores(cm.matrix)
    # IoU0 = 3 / (4 + 3 - 3) = 3/4; IoU1 = 2 / (3 + 3 - 2) = 1/2; IoU2 = 0 / (0 + 1 - 0) = 0 (predicted only)
    assert s["class_iou"] == pytest.approx([75.0, 50.0, 0.0])
    assert s["miou"] == pytest.approx(125.0 / 3)  # class 2 counts: present in predictions
    assert s["class_accuracy"][:2] == pytest.approx([75.0, 200.0 / 3]) and s["class_accuracy"][2] is None
    assert s["mean_accuracy"] == pytest.approx((75.0 + 200.0 / 3) / 2)
    assert s["pixel_accuracy"] == pytest.approx(500.0 / 7)
    assert s["absent_classes"] == [] and s["classes_absent_from_labels"] == [2]


def test_absent_class_left_out_of_miou_but_zero_in_paddleseg_mean():
    label = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 0])
    cm = ConfusionMatrix(4, 255)
    cm.update(pred, label)
    s = seg_scores(cm.matrix)
    # IoU0 = 2/3, IoU1 = 1/2, classes 2 and 3 absent from both
    assert s["class_iou"][2] is None and s["class_iou"][3] is None
    assert s["absent_classes"] == [2, 3]
    assert s["miou"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert s["miou_counting_absent_as_zero"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 4)


def test_uint8_labels_do_not_overflow_the_flat_index():
    # K * label + pred in uint8 would wrap for K = 150; the matrix must still be right
    label = np.array([149, 149, 100, 255], np.uint8)
    pred = np.array([149, 3, 100, 7], np.uint8)
    cm = ConfusionMatrix(150, 255)
    cm.update(pred, label)
    assert cm.matrix.sum() == 3
    assert cm.matrix[149, 149] == 1 and cm.matrix[149, 3] == 1 and cm.matrix[100, 100] == 1


def test_out_of_range_label_is_a_data_error_naming_the_file():
    cm = ConfusionMatrix(11, 11)
    with pytest.raises(DataError, match=r"valannot/x\.png: label value 12 is outside 0\.\.10"):
        cm.update(np.zeros(3, int), np.array([0, 11, 12]), where="valannot/x.png")
    with pytest.raises(ValueError, match="prediction values"):
        cm.update(np.array([0, 11]), np.array([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2), int), np.zeros(4, int))


def test_empty_matrix_and_add():
    s = seg_scores(np.zeros((3, 3), np.int64))
    assert s["miou"] is None and s["pixel_accuracy"] is None and s["class_iou"] == [None] * 3
    a, b = ConfusionMatrix(3, 255), ConfusionMatrix(3, 255)
    a.update([0, 1], [0, 1])
    b.update([2], [1])
    a.add(b.matrix)
    np.testing.assert_array_equal(a.matrix, [[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    a.reset()
    assert a.matrix.sum() == 0
