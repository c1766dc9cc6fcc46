"""The evaluation preprocessing equals torchvision's rules, re-implemented here from SPEC.md, pixel for pixel.

The reference below is written independently of ``shunted.data.transforms``: torchvision's ``Resize(int)``
(shorter side → R, longer ``int(R * long / short)``, untouched when already that size), ``CenterCrop(S)``
(zero padding via ``ImageOps.expand`` when the image is smaller, then ``top = int(round((h - S) / 2.0))``) on
``Image.open(f).convert('RGB')``, then ``ToTensor`` + ``Normalize``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from shunted.data.transforms import EvalTransform, center_crop_offsets, load_rgb, resize_shorter_size
from shunted.errors import DataError
from shunted.models import get_pretrained_cfg

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def reference_crop(source, size: int, resize: int, interpolation: str = "bicubic") -> np.ndarray:
    img = Image.open(source).convert("RGB")
    w, h = img.size
    if w <= h:
        target = (resize, int(resize * h / w))
    else:
        target = (int(resize * w / h), resize)
    if target != (w, h):
        img = img.resize(target, FILTERS[interpolation])
    w, h = img.size
    if size > w or size > h:
        pad_l = (size - w) // 2 if size > w else 0
        pad_t = (size - h) // 2 if size > h else 0
        pad_r = (size - w + 1) // 2 if size > w else 0
        pad_b = (size - h + 1) // 2 if size > h else 0
        img = ImageOps.expand(img, border=(pad_l, pad_t, pad_r, pad_b), fill=0)
        w, h = img.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return np.array(img.crop((left, top, left + size, top + size)))


def reference_normalize(crop: np.ndarray) -> np.ndarray:
    chw = crop.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    mean = np.array(MEAN, np.float32).reshape(3, 1, 1)
    std = np.array(STD, np.float32).reshape(3, 1, 1)
    return (chw - mean) / std


@pytest.fixture(scope="module")
def imagenet_samples(shared_dir) -> list[Path]:
    files = sorted((shared_dir / "data" / "imagenet-samples").glob("*.JPEG"))
    assert len(files) == 120
    return files


def test_defaults_come_from_the_registry():
    cfg = get_pretrained_cfg("shunted_s")
    t = EvalTransform.from_config(cfg)
    assert (t.img_size, t.resize_short, t.interpolation) == (224, 256, "bicubic")
    assert t.mean == cfg.mean and t.std == cfg.std
    assert EvalTransform.from_config(cfg, img_size=64).resize_short == 73  # int(64 / 0.875)
    assert EvalTransform.from_config(cfg, img_size=384, crop_pct=1.0).resize_short == 384
    assert EvalTransform.from_config(cfg, crop_pct=0.9, resize_short=250).resize_short == 250


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_uint8_crops_identical_on_all_imagenet_samples(imagenet_samples, interpolation):
    t = EvalTransform(224, 256, interpolation)
    for path in imagenet_samples:
        ours = t.crop(load_rgb(path))
        expected = reference_crop(path, 224, 256, interpolation)
        assert ours.dtype == np.uint8 and ours.shape == (224, 224, 3), path.name
        np.testing.assert_array_equal(ours, expected, err_msg=path.name)


def test_samples_exercise_the_rounding_rules(imagenet_samples):
    """The set holds images where int() vs round() of the long side and round() vs // of the offset differ."""
    long_side_differs = offset_differs = padded = 0
    for path in imagenet_samples:
        with Image.open(path) as img:
            w, h = img.size
        short, long = min(w, h), max(w, h)
        if int(256 * long / short) != round(256 * long / short):
            long_side_differs += 1
        new_long = int(256 * long / short)
        if int(round((new_long - 224) / 2.0)) != (new_long - 224) // 2:
            offset_differs += 1
        padded += short < 224
    assert long_side_differs >= 10 and offset_differs >= 10 and padded == 14
    # and our size/offset helpers state the rules on those numbers
    assert resize_shorter_size(500, 333, 256) == (384, 256)  # int(384.38…)
    assert resize_shorter_size(333, 500, 256) == (256, 384)
    assert resize_shorter_size(685, 320, 256) == (548, 256)  # int(548.0)
    assert center_crop_offsets(257, 256, 224) == (16, 16)  # round(16.5) = 16 (half to even)
    assert center_crop_offsets(259, 256, 224) == (18, 16)  # round(17.5) = 18
    assert center_crop_offsets(200, 201, 224) == (-12, -11)  # padded: (224 - w) // 2 before


def test_normalised_array_matches_totensor_normalize(imagenet_samples):
    t = EvalTransform(224, 256)
    for path in imagenet_samples[:12]:
        x = t.load(path)
        assert x.dtype == np.float32 and x.shape == (3, 224, 224) and x.flags.c_contiguous
        np.testing.assert_array_equal(
            x, reference_normalize(reference_crop(path, 224, 256)), err_msg=path.name
        )


def test_normalised_array_matches_torch_bit_for_bit(imagenet_samples):
    torch = pytest.importorskip("torch")
    t = EvalTransform(224, 256)
    for path in imagenet_samples[:6]:
        crop = reference_crop(path, 224, 256)
        expected = torch.from_numpy(crop).permute(2, 0, 1).contiguous().float().div(255)
        expected = expected.sub(torch.tensor(MEAN).view(3, 1, 1)).div(torch.tensor(STD).view(3, 1, 1))
        np.testing.assert_array_equal(t.load(path), expected.numpy(), err_msg=path.name)


def test_exif_orientation_is_ignored(shared_dir):
    path = shared_dir / "data" / "imagenet-samples" / "n02951585_can_opener.JPEG"
    with Image.open(path) as img:
        assert img.getexif().get(0x0112) == 6
        rotated = ImageOps.exif_transpose(img).convert("RGB")
    t = EvalTransform(224, 256)
    ours = t.crop(load_rgb(path))
    np.testing.assert_array_equal(ours, reference_crop(path, 224, 256))
    assert not np.array_equal(ours, t.crop(rotated))  # rotating would change the pixels


def _synthetic(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    w, h = 97, 61
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode == "LA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 2), dtype=np.uint8), "LA")
    if mode == "P":
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").quantize(64)
        img.info["transparency"] = 3
        return img
    if mode == "CMYK":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "CMYK")
    if mode == "I;16":
        return Image.frombytes("I;16", (w, h), rng.integers(0, 65536, (h, w), dtype="<u2").tobytes())
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255, "L").convert("1")
    raise AssertionError(mode)


@pytest.mark.parametrize(
    "mode, fmt",
    [
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("P", "PNG"),
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("L", "JPEG"),
        ("1", "PNG"),
    ],
)
@pytest.mark.parametrize("size, resize", [(64, 73), (64, 50)])  # the second pads: the image is smaller than S
def test_synthetic_modes(tmp_path, mode, fmt, size, resize):
    path = tmp_path / f"img.{fmt.lower()}"
    _synthetic(mode).save(path, fmt)
    with Image.open(path) as img:
        assert img.mode == mode
    t = EvalTransform(size, resize)
    np.testing.assert_array_equal(t.crop(load_rgb(path)), reference_crop(path, size, resize))


def test_exif_rotated_synthetic_jpeg(tmp_path):
    img = _synthetic("L").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "rot.jpg"
    img.save(path, "JPEG", exif=exif.tobytes())
    t = EvalTransform(48, 55)
    np.testing.assert_array_equal(t.crop(load_rgb(path)), reference_crop(path, 48, 55))
    assert load_rgb(path).size == (97, 61)  # not rotated to 61×97


def test_small_image_is_zero_padded_like_torchvision(tmp_path):
    path = tmp_path / "tiny.png"
    Image.fromarray(np.full((21, 40, 3), 200, np.uint8)).save(path)
    t = EvalTransform(32, 21)  # 40×21 stays, crop 32 pads rows: 5 above, 6 below
    crop = t.crop(load_rgb(path))
    np.testing.assert_array_equal(crop, reference_crop(path, 32, 21))
    assert (crop[:5] == 0).all() and (crop[5:26] == 200).all() and (crop[26:] == 0).all()


def test_unreadable_files_raise_a_data_error_naming_them(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    buf = io.BytesIO()
    _synthetic("L").convert("RGB").save(buf, "JPEG")
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    for path in (text, truncated, tmp_path / "missing.jpg"):
        with pytest.raises(DataError, match=path.name):
            load_rgb(path)


def test_describe_records_the_pillow_version():
    import PIL

    d = EvalTransform(64, 73).describe()
    assert d["pillow"] == PIL.__version__
    assert (d["img_size"], d["resize_short"], d["interpolation"]) == (64, 73, "bicubic")


@pytest.mark.parametrize(
    "mean, std", [(MEAN, STD), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.1, 0.9, 0.33), (0.07, 1.3, 0.41))]
)
def test_normalize_by_table_gives_the_formulas_bits_for_every_value(mean, std):
    """``normalize`` looks uint8 values up in a table made by the formula: every one of the 256 values of every
    channel, and a random image, equal the formula's float32 bits (``view(uint32)``: -0.0 ≠ 0.0 too); a float
    image takes the formula itself. Mutation: a table computed in float64 and cast differs in 64 % of the values."""
    from shunted.data.transforms import normalize

    def formula(img):
        x = img.astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    every = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)  # 256×1×3
    random = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for img in (every, random, random[:, ::-1]):  # a flipped (strided) view too
        got = normalize(img, mean, std)
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (3, *img.shape[:2])
        np.testing.assert_array_equal(got.view(np.uint32), formula(img).view(np.uint32))
    as_float = random.astype(np.float32)
    np.testing.assert_array_equal(normalize(as_float, mean, std), formula(as_float))
