"""Detection data (shunted/data/det_datasets.py, det_transforms.py): VOC and COCO readers, dropped boxes, bad
input as one line, and transforms that move the boxes with the pixels (checked by drawing them on the output)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from shunted.data.det_datasets import DetDataset, list_det_samples
from shunted.data.det_transforms import DetTransform, collate_detection
from shunted.errors import DataError

BCCD = Path(__file__).resolve().parents[3] / "shared" / "data" / "bccd"
CLASSES = ["cat", "dog", "bird"]
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]
BACKGROUND = (128, 128, 128)
# (class, box) on a 200 × 150 image: the objects are filled rectangles of the class's colour
OBJECTS = [(0, (20, 30, 70, 110)), (1, (120, 10, 190, 60)), (2, (90, 90, 150, 140))]


def _scene(size=(200, 150), objects=OBJECTS) -> Image.Image:
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    for cls, (x1, y1, x2, y2) in objects:
        draw.rectangle(
            [x1, y1, x2 - 1, y2 - 1], fill=COLOURS[cls]
        )  # PIL's rectangle includes x2: pixels x1..x2-1
    return img


def _frames(rgb: np.ndarray, boxes: np.ndarray, labels, blur: int = 1) -> bool:
    """Every box frames its object: its inside (``blur`` + 1 px in) is the class colour, a 2 px ring just beyond
    ``blur`` px outside is not (``blur``: how far bilinear resampling smears an edge, ≈ the upscale factor)."""
    m = blur + 1
    for (x1, y1, x2, y2), cls in zip(np.round(boxes).astype(int), labels, strict=True):
        inside = rgb[y1 + m : y2 - m, x1 + m : x2 - m].reshape(-1, 3).astype(float)
        if inside.size == 0 or np.abs(inside - COLOURS[cls]).max() > 12:
            return False
        ring = np.zeros(rgb.shape[:2], bool)
        ring[max(y1 - m - 2, 0) : y2 + m + 2, max(x1 - m - 2, 0) : x2 + m + 2] = True
        ring[max(y1 - m, 0) : y2 + m, max(x1 - m, 0) : x2 + m] = False
        if (np.abs(rgb[ring].astype(float) - COLOURS[cls]).max(axis=1) < 12).any():
            return False
    return True


def _unnormalise(x: np.ndarray, t: DetTransform) -> np.ndarray:
    rgb = (x.transpose(1, 2, 0) * np.array(t.std) + np.array(t.mean)) * 255
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("img_scale", "flip"), [((1333, 800), False), ((1333, 800), True), ((133, 80), True), ((90, 300), False)]
)
def test_transformed_boxes_still_frame_their_objects(tmp_path, img_scale, flip):
    boxes = np.array([b for _, b in OBJECTS], np.float32)
    labels = [c for c, _ in OBJECTS]
    assert _frames(np.asarray(_scene()), boxes, labels)
    t = DetTransform(img_scale=img_scale, flip_prob=1.0 if flip else 0.0)
    x, moved, info = t(_scene(), boxes, np.random.default_rng(0))
    rgb = _unnormalise(x, t)
    assert info["flipped"] is flip and rgb.shape[:2] == info["image_shape"]
    assert max(rgb.shape[:2]) <= max(img_scale) and min(rgb.shape[:2]) <= min(img_scale)
    drawn = Image.fromarray(rgb)
    for b in moved:
        ImageDraw.Draw(drawn).rectangle(list(b), outline=(255, 255, 0))
    drawn.save(tmp_path / "boxes.png")  # what the check below looks at, for a human
    blur = int(np.ceil(max(info["scale_factor"])))
    assert _frames(rgb, moved, labels, blur)
    if flip:  # mutation: boxes left unflipped while the pixels are flipped no longer frame the objects
        unflipped = boxes * np.array(info["scale_factor"] * 2, np.float32)
        assert not _frames(rgb, unflipped, labels, blur)


def test_resize_follows_mmcv_rescale_and_collate_pads_to_32():
    t = DetTransform()
    x, _, info = t(Image.new("RGB", (640, 480)), np.zeros((0, 4)), None)
    assert info["image_shape"] == (800, 1067) and info["pad_shape"] == (
        800,
        1088,
    )  # 640·1.6667 = 1066.7 → 1067
    assert info["scale_factor"] == pytest.approx((1067 / 640, 800 / 480))
    y, *_ = t(Image.new("RGB", (300, 500)), np.zeros((0, 4)), None)
    images, boxes, labels, infos = collate_detection(
        [(x, np.zeros((0, 4)), np.zeros(0), info), (y, np.zeros((0, 4)), np.zeros(0), {})]
    )
    assert (
        images.shape == (2, 3, 1344, 1088)
        and images[1, :, 800:].max() == 0
        and images[1, :, :, 480:].max() == 0
    )


# -- VOC and COCO ----------------------------------------------------------------------------------------------------
def _xml(name: str, size, objects) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return f"<annotation><filename>{name}.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height></size>{objs}</annotation>"


def _voc(root: Path, extra=None) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    scenes = {
        "a": [(CLASSES[c], b) for c, b in OBJECTS],
        "b": [
            ("dog", (10, 10, 10, 40)),
            ("cat", (190, 100, 230, 160)),
            ("bird", (300, 10, 320, 30)),
        ],  # 0-area, clipped, out
        "c": [],  # no boxes
    }
    scenes.update(extra or {})
    for name, objects in scenes.items():
        _scene().save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        (root / "Annotations" / f"{name}.xml").write_text(_xml(name, (200, 150), objects))
    (root / "label_list.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "train.txt").write_text("\n".join(scenes) + "\n")
    return root


def test_voc_reads_boxes_as_given_and_drops_zero_area_and_outside_boxes(tmp_path):
    samples = list_det_samples(_voc(tmp_path), "train.txt")
    assert (
        samples.class_names == CLASSES
        and samples.category_ids == [1, 2, 3]
        and samples.image_ids == [0, 1, 2]
    )
    np.testing.assert_array_equal(samples.boxes[0], [b for _, b in OBJECTS])
    assert samples.labels[0].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(samples.boxes[1], [[190, 100, 200, 150]])  # clipped to the image
    assert samples.dropped == {"zero-area": 1, "outside the image": 1} and samples.clipped == 1
    assert "2 box(es) dropped" in samples.dropped_note() and "b.xml" in samples.dropped_note()
    assert samples.boxes[2].shape == (0, 4)
    (tmp_path / "pairs.txt").write_text(
        "JPEGImages/a.jpg Annotations/a.xml\n"
    )  # PaddleDetection's pair lines
    assert list_det_samples(tmp_path, "pairs.txt").boxes[0].tolist() == samples.boxes[0].tolist()
    ds = DetDataset(samples, DetTransform(img_scale=(100, 75)))
    x, boxes, labels, info = ds[0]
    np.testing.assert_allclose(boxes, samples.boxes[0] / 2) and labels.tolist() == [0, 1, 2]


def test_coco_json_gives_the_same_samples_with_its_own_ids(tmp_path):
    _voc(tmp_path)
    coco = {
        "images": [{"id": 7, "file_name": "JPEGImages/a.jpg", "width": 200, "height": 150}],
        "categories": [{"id": 3, "name": "bird"}, {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {
                "id": k,
                "image_id": 7,
                "category_id": c + 1,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "iscrowd": 0,
            }
            for k, (c, b) in enumerate(OBJECTS)
        ]
        + [{"id": 9, "image_id": 7, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1}],
    }
    (tmp_path / "a.json").write_text(json.dumps(coco))
    samples = list_det_samples(tmp_path, "a.json")
    assert samples.class_names == ["cat", "dog", "bird"] and samples.category_ids == [1, 2, 3]
    assert samples.image_ids == [7] and samples.labels[0].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(samples.boxes[0], [b for _, b in OBJECTS])


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (
            lambda r: (r / "Annotations" / "a.xml").write_text("<annotation><object>"),
            r"a\.xml: malformed annotation XML",
        ),
        (lambda r: (r / "JPEGImages" / "b.jpg").unlink(), r"train\.txt:2: image JPEGImages/b\.jpg not found"),
        (
            lambda r: (r / "label_list.txt").write_text("cat\ndog\ncat\nbird\n"),
            r"label_list\.txt: class name\(s\) listed twice: cat",
        ),
        (
            lambda r: (r / "label_list.txt").write_text("cat\ndog\n"),
            r"label_list\.txt: does not name the class\(es\) 'bird' \(first in a\.xml\)",
        ),
        (
            lambda r: (r / "Annotations" / "c.xml").write_text(
                _xml("c", (9, 9), [("cow", (1, 1, 5, 5)), ("pig", (1, 1, 3, 3))])
            ),
            r"'cow' \(first in c\.xml\), 'pig'",
        ),
        (
            lambda r: (r / "Annotations" / "c.xml").write_text(_xml("c", (9, 9), [("cat", ("x", 1, 5, 5))])),
            r"c\.xml: object 0 \(cat\): bndbox needs numeric",
        ),
        (lambda r: (r / "label_list.txt").unlink(), r"no label_list\.txt beside it"),
    ],
)
def test_bad_voc_input_is_one_line_naming_the_file(tmp_path, breakage, message):
    root = _voc(tmp_path)
    breakage(root)
    with pytest.raises(DataError, match=message) as info:
        list_det_samples(root, "train.txt")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"not a readable COCO JSON"),
        ('{"images": []}', r"needs 'images' and 'categories'"),
        (
            '{"images": [{"id": 1, "file_name": "JPEGImages/a.jpg"}], "categories": [{"id": 1, "name": "x"}], "annotations": [{"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1]}]}',
            r"category id\(s\) \[5\]",
        ),
        (
            '{"images": [{"id": 1, "file_name": "nope.jpg"}], "categories": []}',
            r"image nope\.jpg \(id 1\) not found",
        ),
    ],
)
def test_bad_coco_input_is_one_line(tmp_path, content, message):
    _voc(tmp_path)
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(DataError, match=message):
        list_det_samples(tmp_path, "bad.json")


@pytest.mark.skipif(not BCCD.is_dir(), reason="../shared/data/bccd (the real BCCD data) is not present")
def test_bccd_reads_with_its_one_zero_area_box_dropped():
    train = list_det_samples(BCCD, "train.txt")
    val = list_det_samples(BCCD, "val.txt")
    assert (len(train), len(val)) == (205, 87) and train.class_names == ["RBC", "WBC", "Platelets"]
    assert train.dropped == {"zero-area": 1} and val.dropped == {"zero-area": 1}
    assert "BloodImage_00343" in train.dropped_note() and "BloodImage_00338" in val.dropped_note()
    counts = np.bincount(np.concatenate(train.labels), minlength=3)
    assert counts.sum() + 1 == 2382 + 214 + 209 and counts[1] == 214
