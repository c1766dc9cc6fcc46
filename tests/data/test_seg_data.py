"""Segmentation data: list/folder layouts, label reading, the training augmentation's rules, CamVid lists.

Augmentation rules checked against independent computations: labels are resized with nearest neighbour only
(compared with PIL NEAREST; any interpolating filter invents values and fails), the category-ratio crop rule,
flip applied to image and label together, padding with ignore_index, reproducibility from the seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shunted.data.seg_datasets import SegDataset, list_seg_samples, read_label
from shunted.data.seg_transforms import (
    SegEvalTransform,
    SegTrainTransform,
    cat_ratio_ok,
    random_crop_box,
    rescaled_size,
)
from shunted.errors import DataError
from shunted.models.registry import IMAGENET_MEAN, IMAGENET_STD

MEAN = np.asarray(IMAGENET_MEAN, np.float32)
STD = np.asarray(IMAGENET_STD, np.float32)


def normalised(rgb: np.ndarray) -> np.ndarray:
    return ((rgb.astype(np.float32) / np.float32(255.0) - MEAN) / STD).transpose(2, 0, 1)


def blocky_label(height, width, seed=0, block=7, values=(0, 1, 3, 5, 9, 10, 255)):
    """Blocks of widely spaced class values: any interpolation between them produces values not in the set."""
    rng = np.random.default_rng(seed)
    small = rng.choice(values, size=(height // block + 1, width // block + 1)).astype(np.uint8)
    return np.kron(small, np.ones((block, block), np.uint8))[:height, :width]


def gradient_image(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(
        np.uint8
    )


def plain(**kwargs) -> SegTrainTransform:
    """Geometry only: no flip, no photometric distortion, no crop rule, unless asked."""
    opts = dict(scale_range=(1.0, 1.0), cat_max_ratio=1.0, flip_prob=0.0, photometric=False, ignore_index=255)
    opts.update(kwargs)
    return SegTrainTransform(**opts)


# --- label resizing: nearest neighbour only -------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1.37, 0.63, 2.0, 0.5])
def test_label_rescale_is_pil_nearest(ratio):
    label = blocky_label(45, 62)
    image = Image.fromarray(gradient_image(45, 62))
    t = plain(crop_size=(200, 200), scale_range=(ratio, ratio))
    x, y = t(image, label, np.random.default_rng(0))
    w, h = int(62 * ratio + 0.5), int(45 * ratio + 0.5)
    expected = np.asarray(Image.fromarray(label).resize((w, h), Image.Resampling.NEAREST))
    assert y.dtype == np.int64 and y.shape == (200, 200)
    np.testing.assert_array_equal(y[:h, :w], expected)
    assert (y[h:] == 255).all() and (y[:, w:] == 255).all()
    # the image itself is resized bilinearly (smooth), at the same size
    img_expected = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(x[:, :h, :w], normalised(img_expected), atol=1e-6)


def test_label_values_stay_a_subset_under_random_scales_and_crops():
    label = blocky_label(90, 120, seed=3)
    image = Image.fromarray(gradient_image(90, 120))
    t = SegTrainTransform(crop_size=(64, 80), ignore_index=255)  # default scale 0.5-2, flips, photometric
    for seed in range(30):
        _, y = t(image, label, np.random.default_rng(seed))
        assert set(np.unique(y)) <= set(np.unique(label)), seed


def test_rescaled_size_with_base_size():
    assert rescaled_size(480, 360, 1.0) == (480, 360)
    assert rescaled_size(480, 360, 0.5) == (240, 180)
    # mmseg Resize(img_scale=(2048, 512)): the short side goes to 512 * ratio unless the long side limits it
    assert rescaled_size(480, 360, 1.0, base_size=(2048, 512)) == (683, 512)
    assert rescaled_size(480, 360, 0.5, base_size=(2048, 512)) == (341, 256)


# --- crop with the category-ratio rule -------------------------------------------------------------------------


def two_class_label():
    label = np.zeros((20, 200), np.uint8)
    label[:, 100:] = 1  # a 100-wide crop at offset o holds o columns of class 1
    return label


def test_crop_obeys_the_category_ratio_rule():
    label = two_class_label()
    for seed in range(300):
        top, left, h, w = random_crop_box(label, (20, 100), np.random.default_rng(seed), 0.9, 255)
        assert (h, w) == (20, 100)
        assert 0.1 < left / 100 < 0.9, (seed, left)  # each class must cover < 90 % of the crop
    # the rule is what does it: without it, some of the same draws give one-class crops
    lefts = [random_crop_box(label, (20, 100), np.random.default_rng(s), 1.0, 255)[1] for s in range(300)]
    assert any(not 0.1 < o / 100 < 0.9 for o in lefts)


def test_crop_rule_ignores_ignore_pixels_and_needs_two_classes():
    strip = np.full((4, 10), 255, np.uint8)
    strip[:, :2] = 3
    assert not cat_ratio_ok(strip, 0.75, 255)  # one class besides ignore: rejected
    strip[:, 2:4] = 4
    assert cat_ratio_ok(strip, 0.6, 255)  # 50 % / 50 % of the non-ignored pixels
    assert not cat_ratio_ok(strip, 0.6, ignore_index=0)  # were 255 a class, it would cover 60 %
    label = np.full((10, 200), 255, np.uint8)
    label[:, :100] = 0
    label[:, 100:120] = 1
    # a 100-wide crop at offset o: 100 - o pixels of class 0, min(o, 20) of class 1 per row; accepted for o in
    # 11..97; counting ignore pixels as a class would also accept o in 98..100
    offsets = set()
    for seed in range(200):
        top, left, h, w = random_crop_box(label, (10, 100), np.random.default_rng(seed), 0.9, 255)
        assert 11 <= left <= 97, (seed, left)
        offsets.add(left)
    assert len(offsets) > 50


def test_transform_crop_uses_the_rule():
    label = two_class_label()
    image = Image.fromarray(gradient_image(20, 200))
    t = plain(crop_size=(20, 100), cat_max_ratio=0.9)
    for seed in range(50):
        _, y = t(image, label, np.random.default_rng(seed))
        assert 10 < int((y == 1).sum(axis=1)[0]) < 90


# --- flip, pad, normalise, photometric ------------------------------------------------------------------------


def test_flip_applies_to_image_and_label_together():
    rgb = gradient_image(30, 40)
    label = blocky_label(30, 40)
    image = Image.fromarray(rgb)
    x, y = plain(crop_size=(30, 40), flip_prob=1.0)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(y, label[:, ::-1])
    np.testing.assert_allclose(x, normalised(rgb[:, ::-1]), atol=1e-6)
    x, y = plain(crop_size=(30, 40), flip_prob=0.0)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(y, label)
    np.testing.assert_allclose(x, normalised(rgb), atol=1e-6)
    flips = 0
    t = plain(crop_size=(30, 40), flip_prob=0.5)
    for seed in range(20):
        x, y = t(image, label, np.random.default_rng(seed))
        flipped = bool((y == label[:, ::-1]).all())
        assert flipped != bool((y == label).all())
        np.testing.assert_allclose(x, normalised(rgb[:, ::-1] if flipped else rgb), atol=1e-6)
        flips += flipped
    assert 3 <= flips <= 17


def test_pad_uses_ignore_index_for_labels_and_zero_for_images():
    rgb = gradient_image(30, 40)
    label = blocky_label(30, 40, values=(0, 1, 2))
    x, y = plain(crop_size=(64, 50), ignore_index=11)(Image.fromarray(rgb), label, np.random.default_rng(0))
    assert x.shape == (3, 64, 50) and y.shape == (64, 50)
    np.testing.assert_array_equal(y[:30, :40], label)
    assert (y[30:] == 11).all() and (y[:, 40:] == 11).all()
    assert (x[:, 30:] == 0).all() and (x[:, :, 40:] == 0).all()
    np.testing.assert_allclose(x[:, :30, :40], normalised(rgb), atol=1e-6)


def test_photometric_changes_the_image_only():
    rgb = gradient_image(48, 64)
    label = blocky_label(48, 64)
    image = Image.fromarray(rgb)
    t_on = SegTrainTransform(crop_size=(40, 40), cat_max_ratio=1.0, photometric=True)
    t_off = SegTrainTransform(crop_size=(40, 40), cat_max_ratio=1.0, photometric=False)
    changed = 0
    for seed in range(10):
        x1, y1 = t_on(image, label, np.random.default_rng(seed))
        x0, y0 = t_off(image, label, np.random.default_rng(seed))
        np.testing.assert_array_equal(y1, y0)  # geometry draws come first: same crop and flip
        changed += not np.allclose(x1, x0)
        assert (
            x1.min() >= (0 - MEAN.max()) / STD.min() - 1e-5
            and x1.max() <= (1 - MEAN.min()) / STD.min() + 1e-5
        )
    assert changed >= 5


def test_reproducible_from_the_generator():
    image = Image.fromarray(gradient_image(60, 80))
    label = blocky_label(60, 80)
    t = SegTrainTransform(crop_size=(32, 48), ignore_index=255)
    a = t(image, label, np.random.default_rng([1, 2, 3]))
    b = t(image, label, np.random.default_rng([1, 2, 3]))
    c = t(image, label, np.random.default_rng([1, 2, 4]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.float32 and a[1].dtype == np.int64


def test_eval_transform_normalises_the_whole_image():
    rgb = gradient_image(36, 48)
    image = Image.fromarray(rgb)
    np.testing.assert_allclose(SegEvalTransform()(image), normalised(rgb), atol=1e-6)
    half = SegEvalTransform(IMAGENET_MEAN, IMAGENET_STD, scale=0.5)(image)
    assert half.shape == (3, 18, 24) and half.dtype == np.float32


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="label size"):
        plain(crop_size=(8, 8))(Image.fromarray(gradient_image(10, 12)), np.zeros((10, 11), np.uint8), None)


# --- labels and sample lists -----------------------------------------------------------------------------------


def test_read_label_modes(tmp_path):
    idx = np.array([[0, 1, 2], [11, 3, 255]], np.uint8)
    Image.fromarray(idx, "L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_label(tmp_path / "l.png"), idx)
    pal = Image.fromarray(idx, "P")
    pal.putpalette([(i * 37) % 256 for i in range(768)])  # colours unrelated to the indices
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label(tmp_path / "p.png"), idx)
    Image.fromarray(idx.astype(np.uint16)).save(tmp_path / "i16.png")
    np.testing.assert_array_equal(read_label(tmp_path / "i16.png"), idx)
    big = idx.astype(np.uint16)
    big[0, 0] = 300
    Image.fromarray(big).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"big\.png: label values 1\.\.300 do not fit 0\.\.255"):
        read_label(tmp_path / "big.png")
    Image.fromarray(np.stack([idx] * 3, -1), "RGB").save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"rgb\.png: .*labels must be single-channel class-index PNGs") as err:
        read_label(tmp_path / "rgb.png")
    assert "\n" not in str(err.value)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png: cannot read label"):
        read_label(tmp_path / "bad.png")


def make_pairs(root, names, label_dir="labels", sub=""):
    (root / "images" / sub).mkdir(parents=True, exist_ok=True)
    (root / label_dir / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(gradient_image(8, 10)).save(root / "images" / sub / f"{name}.jpg")
        Image.fromarray(np.full((8, 10), i, np.uint8)).save(root / label_dir / sub / f"{name}.png")


def test_list_file_layout(tmp_path):
    make_pairs(tmp_path, ["a", "b", "c"])
    (tmp_path / "train.txt").write_text(
        "# comment\nimages/b.jpg labels/b.png\n\n  images/a.jpg   labels/a.png  \nimages/c.jpg\n"
    )
    s = list_seg_samples(tmp_path, "train.txt")  # found under root
    assert len(s) == 3 and s.layout == "list" and s.list_file == tmp_path / "train.txt"
    assert [s.relative(i) for i in range(3)] == ["images/b.jpg", "images/a.jpg", "images/c.jpg"]
    assert s.labels == [tmp_path / "labels/b.png", tmp_path / "labels/a.png", None]
    assert len(s.head(2)) == 2 and s.describe()["labelled"] == 2
    assert list_seg_samples(tmp_path, tmp_path / "train.txt").images == s.images  # or as given
    with pytest.raises(DataError, match="has no label"):
        SegDataset(s, plain(crop_size=(8, 8)), train=True)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("images/a.jpg labels/a.png extra", r"bad\.txt:2: expected 'image label'.*3 fields"),
        ("images/x.jpg labels/a.png", r"bad\.txt:2: image images/x\.jpg not found"),
        ("images/a.jpg labels/x.png", r"bad\.txt:2: label labels/x\.png not found"),
    ],
)
def test_bad_list_lines_name_list_and_line(tmp_path, line, message):
    make_pairs(tmp_path, ["a"])
    (tmp_path / "bad.txt").write_text(f"images/a.jpg labels/a.png\n{line}\n")
    with pytest.raises(DataError, match=message) as err:
        list_seg_samples(tmp_path, "bad.txt")
    assert "\n" not in str(err.value)


def test_missing_list_and_root(tmp_path):
    with pytest.raises(DataError, match="no such list file"):
        list_seg_samples(tmp_path, "nope.txt")
    with pytest.raises(DataError, match="not a directory"):
        list_seg_samples(tmp_path / "nope")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="no images listed"):
        list_seg_samples(tmp_path, "empty.txt")


def test_folder_pairs(tmp_path):
    make_pairs(tmp_path, ["b", "a"], label_dir="annotations", sub="training")
    s = list_seg_samples(tmp_path)
    assert s.layout == "folders"
    assert [s.relative(i) for i in range(2)] == ["images/training/a.jpg", "images/training/b.jpg"]
    assert [p.relative_to(tmp_path).as_posix() for p in s.labels] == [
        "annotations/training/a.png",
        "annotations/training/b.png",
    ]
    Image.fromarray(gradient_image(8, 10)).save(tmp_path / "images" / "training" / "c.jpg")
    with pytest.raises(DataError, match=r"c\.jpg: no label"):
        list_seg_samples(tmp_path)


def test_folder_images_only_and_no_layout(tmp_path):
    (tmp_path / "img").mkdir()
    Image.fromarray(gradient_image(8, 10)).save(tmp_path / "img" / "x.png")
    s = list_seg_samples(tmp_path)
    assert s.labels == [None]
    x, y, i = SegDataset(s, SegEvalTransform(), ignore_index=11)[0]
    assert x.shape == (3, 8, 10) and y.shape == (8, 10) and (y == 11).all() and i == 0
    with pytest.raises(DataError, match="no images/img folder"):
        list_seg_samples(tmp_path / "img")


def test_dataset_label_size_mismatch(tmp_path):
    make_pairs(tmp_path, ["a"])
    Image.fromarray(np.zeros((9, 10), np.uint8)).save(tmp_path / "labels" / "a.png")
    ds = SegDataset(list_seg_samples(tmp_path), SegEvalTransform())
    with pytest.raises(DataError, match=r"a\.png: label is 10×9, its image a\.jpg is 10×8"):
        ds[0]


# --- real CamVid lists -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camvid(shared_dir):
    root = shared_dir / "data" / "camvid"
    if not (root / "train.txt").is_file():
        pytest.skip(f"{root} has no CamVid lists")
    return root


def test_camvid_lists(camvid):
    train = list_seg_samples(camvid, "train.txt")
    val = list_seg_samples(camvid, "val.txt")
    assert (len(train), len(val)) == (367, 101)
    assert train.labelled == 367 and val.labelled == 101
    image = Image.open(train.images[0])
    label = read_label(train.labels[0])
    assert image.size == (480, 360) and label.shape == (360, 480) and label.dtype == np.uint8
    assert set(np.unique(label)) <= set(range(12))


def test_camvid_datasets(camvid):
    samples = list_seg_samples(camvid, "val.txt").head(3)
    ev = SegDataset(samples, SegEvalTransform())
    x, y, i = ev[1]
    assert (
        x.shape == (3, 360, 480) and x.dtype == np.float32 and y.shape == (360, 480) and y.dtype == np.int64
    )
    assert i == 1 and set(np.unique(y)) <= set(range(12))
    tr = SegDataset(samples, SegTrainTransform(crop_size=(128, 160), ignore_index=11), seed=7, train=True)
    a = tr[2]
    np.testing.assert_array_equal(a[0], tr[2][0])  # same (seed, epoch, index): same draw
    assert a[0].shape == (3, 128, 160) and a[1].shape == (128, 160) and set(np.unique(a[1])) <= set(range(12))
    tr.set_epoch(1)
    assert not np.array_equal(a[0], tr[2][0])  # another epoch, another augmentation
    tr.set_epoch(0)
    np.testing.assert_array_equal(a[1], tr[2][1])


def test_reduce_zero_label_is_mmseg_ade20k_convention(tmp_path):
    from shunted.data.seg_datasets import SegDataset, list_seg_samples, reduce_zero_label
    from shunted.data.seg_transforms import SegEvalTransform

    label = np.array([[0, 1, 2], [150, 254, 255]], np.uint8)
    # mmseg's LoadAnnotations(reduce_zero_label=True), step by step on a wider type
    ref = label.astype(np.int64)
    ref[ref == 0] = 255
    ref = ref - 1
    ref[ref == 254] = 255
    assert reduce_zero_label(label).tolist() == ref.tolist() == [[255, 0, 1], [149, 253, 255]]
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    Image.new("RGB", (3, 2), (10, 20, 30)).save(tmp_path / "img" / "a.jpg")
    Image.fromarray(label, "L").save(tmp_path / "ann" / "a.png")
    (tmp_path / "list.txt").write_text("img/a.jpg ann/a.png\n")
    samples = list_seg_samples(tmp_path, tmp_path / "list.txt")
    plain = SegDataset(samples, SegEvalTransform())[0][1]
    reduced = SegDataset(samples, SegEvalTransform(), reduce_zero_label=True)[0][1]
    assert plain.tolist() == label.tolist() and reduced.tolist() == ref.tolist()
