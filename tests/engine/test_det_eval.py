"""det-eval (shunted/engine/det/): COCO metrics by pycocotools, detections back in the original pixels, saved
results scored again without a model, bad input as one line.

An "oracle" predictor stands in for a trained model: for each image it outputs the raw head outputs that encode
the ground truth (high scores and exact deltas on the anchors matched to a box), so the whole path — transform,
the inference loop, post-processing, the division by the resize's scale factor, image and category ids,
pycocotools — must give AP 100. A path that forgets the scale factor drops it far below (the mutation).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from shunted.data.det_datasets import DetDataset, list_det_samples
from shunted.data.det_transforms import DetTransform
from shunted.engine.det import evaluate as det_eval
from shunted.engine.det.evaluate import DetEvalConfig, evaluate_det_checkpoint
from shunted.engine.det.metrics import coco_metrics, ground_truth
from shunted.engine.session import Opened
from shunted.errors import DataError
from shunted.models import det_boxes
from shunted.models.registry import get_det_pretrained_cfg
from tests.data.test_det_data import _voc

SCALE = (100, 75)  # the 200 × 150 test images are halved


def _oracle(dataset: DetDataset):
    """A predictor that returns, for the images in order, raw outputs encoding their ground truth."""
    state = {"next": 0}

    def predict(x: np.ndarray):
        outs_cls, outs_reg = [], []
        sizes = det_boxes.level_sizes(*x.shape[2:])
        anchors = np.concatenate(det_boxes.multilevel_anchors(sizes))
        for _ in range(len(x)):
            _, boxes, labels, _ = dataset[state["next"]]
            state["next"] += 1
            cls = np.full((len(anchors), 3), -10.0, np.float32)
            reg = np.zeros((len(anchors), 4), np.float32)
            assigned = det_boxes.assign(anchors, boxes)
            pos = np.flatnonzero(assigned > 0)
            cls[pos, labels[assigned[pos] - 1]] = 10.0
            reg[pos] = det_boxes.encode(anchors[pos], boxes[assigned[pos] - 1])
            outs_cls.append(cls)
            outs_reg.append(reg)
        return [np.stack(outs_cls), np.stack(outs_reg)]

    return predict


def _opened(predictor) -> Opened:
    return Opened(predictor, None, "shunted_t_retinanet", get_det_pretrained_cfg("shunted_t_retinanet", 3), 3,
                  "oracle.pdparams", "0" * 64, "oracle", 800, None)  # fmt: skip


def _cfg(root, **kw) -> DetEvalConfig:
    return DetEvalConfig(
        "shunted_t_retinanet", None, root, "train.txt", img_scale=SCALE, workers=0, progress=False, **kw
    )


def test_oracle_detections_score_100_and_the_saved_file_scores_the_same(tmp_path):
    root = _voc(tmp_path / "voc")
    samples = list_det_samples(root, "train.txt")
    dataset = DetDataset(samples, DetTransform(img_scale=SCALE))
    dets = tmp_path / "dets.json"
    result = evaluate_det_checkpoint(
        _cfg(root, output=tmp_path / "r.json", save_detections=dets), opened=_opened(_oracle(dataset))
    )
    assert result["ap"] == result["ap50"] == result["ap75"] == pytest.approx(100.0)
    assert result["class_ap"] == {
        "cat": pytest.approx(100.0),
        "dog": pytest.approx(100.0),
        "bird": pytest.approx(100.0),
    }
    assert result["images"] == 3 and result["data"]["boxes_dropped"] == {
        "outside the image": 1,
        "zero-area": 1,
    }
    saved = json.loads(dets.read_text())
    first = [d for d in saved if d["image_id"] == 0]
    assert {d["category_id"] for d in first} == {1, 2, 3}
    cat = next(d for d in first if d["category_id"] == 1)
    np.testing.assert_allclose(cat["bbox"], [20, 30, 50, 80], atol=1e-3)  # the original pixels, [x, y, w, h]
    written = json.loads((tmp_path / "r.json").read_text())
    assert {"ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100", "class_ap", "images"} <= set(
        written
    )
    again = evaluate_det_checkpoint(
        DetEvalConfig(None, None, root, "train.txt", detections=dets, progress=False)
    )
    for key in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100", "class_ap"):
        assert again[key] == result[key]


def test_a_path_that_forgets_the_scale_factor_scores_far_lower(tmp_path, monkeypatch):
    root = _voc(tmp_path / "voc")
    dataset = DetDataset(list_det_samples(root, "train.txt"), DetTransform(img_scale=SCALE))
    original = det_eval.to_results
    monkeypatch.setattr(
        det_eval, "to_results", lambda det, info, *a: original(det, {**info, "scale_factor": (1.0, 1.0)}, *a)
    )
    result = evaluate_det_checkpoint(_cfg(root), opened=_opened(_oracle(dataset)))
    assert result["ap"] < 30


def test_metrics_of_shifted_boxes_pass_iou_50_not_75(tmp_path):
    samples = list_det_samples(_voc(tmp_path), "train.txt")
    dets = []
    for i, (boxes, labels) in enumerate(zip(samples.boxes, samples.labels, strict=True)):
        for (x1, y1, x2, y2), c in zip(boxes, labels, strict=True):
            w, h = x2 - x1, y2 - y1
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(c) + 1,
                    "bbox": [float(x1 + 0.2 * w), float(y1), float(w), float(h)],
                    "score": 0.9,
                }
            )
    m = coco_metrics(ground_truth(samples), dets, samples)  # IoU 0.8 / 1.2 = 0.667
    assert m["ap50"] == pytest.approx(100.0) and m["ap75"] == 0.0
    assert coco_metrics(ground_truth(samples), [], samples)["ap"] == 0.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{]", r"not a readable COCO results JSON"),
        ('{"a": 1}', r"not a COCO results list"),
        (
            '[{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]',
            r"entry 0: image_id 9 is not an image",
        ),
        ('[{"image_id": 0, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 1}]', r"entry 0: category_id 7"),
        ('[{"image_id": 0, "category_id": 1, "bbox": [0, 0, 1], "score": 1}]', r"entry 0 is not"),
    ],
)
def test_bad_detections_file_is_one_line(tmp_path, content, message):
    root = _voc(tmp_path / "voc")
    (tmp_path / "d.json").write_text(content)
    with pytest.raises(DataError, match=message):
        evaluate_det_checkpoint(DetEvalConfig(None, None, root, "train.txt", detections=tmp_path / "d.json"))


def test_an_unreadable_image_stops_with_its_name(tmp_path):
    root = _voc(tmp_path / "voc")
    (root / "JPEGImages" / "b.jpg").write_bytes(b"not a jpeg")
    dataset = DetDataset(list_det_samples(root, "train.txt"), DetTransform(img_scale=SCALE))
    with pytest.raises(DataError, match=r"b\.jpg: cannot read image"):
        evaluate_det_checkpoint(_cfg(root), opened=_opened(_oracle(dataset)))


# -- det-predict -----------------------------------------------------------------------------------------------------
def test_det_predict_draws_the_boxes_in_class_colours_and_lists_them(tmp_path):
    from PIL import Image

    from shunted.engine.det.predict import DetPredictConfig, class_colours, detect_images
    from shunted.errors import ShuntedError

    root = _voc(tmp_path / "voc")
    samples = list_det_samples(root, "train.txt")
    dataset = DetDataset(samples, DetTransform(img_scale=SCALE))
    out = tmp_path / "pred"
    Image.open(root / "JPEGImages" / "a.jpg").save(
        tmp_path / "a.png"
    )  # a lossless picture for the pixel check
    cfg = DetPredictConfig([tmp_path / "a.png"], out, "shunted_t_retinanet", None, root / "label_list.txt",
                           img_scale=SCALE, progress=False)  # fmt: skip
    manifest = detect_images(cfg, opened=_opened(_oracle(dataset)))
    record = manifest["images"][0]
    assert record["picture"] == "a_det.png" and [d["class"] for d in record["detections"]] == [
        "cat",
        "dog",
        "bird",
    ]
    np.testing.assert_allclose([d["box"] for d in record["detections"]], samples.boxes[0], atol=0.02)
    pic = np.asarray(Image.open(out / "a_det.png"))
    assert pic.shape[0] > 150 and pic.shape[1] == 200  # the image, then the legend strip below it
    colours = class_colours(3)
    for d in record["detections"]:  # the box's bottom edge (away from the name tag) is in its class's colour
        x1, _, x2, y2 = (int(round(v)) for v in d["box"])
        edge = pic[y2, x1 + 3 : x2 - 3].astype(int)
        assert np.abs(edge - colours[d["class_id"]]).max() == 0
    assert json.loads((out / "det_outputs.json").read_text())["written_by"] == "shunted det-predict"
    detect_images(cfg, opened=_opened(_oracle(dataset)))  # our own earlier output: replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(
        ShuntedError, match=r"holds files that shunted det-predict did not write \(notes\.txt\)"
    ):
        detect_images(cfg, opened=_opened(_oracle(dataset)))
    assert (out / "notes.txt").read_text() == "mine"
