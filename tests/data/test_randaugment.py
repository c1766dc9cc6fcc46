"""RandAugment rand-m9-mstd0.5-inc1: parsing, op set, magnitude → argument, op effects, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shunted.data.randaugment import INCREASING_OPS, RandAugment, op_argument


def test_parses_the_recipe_string():
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc1", mean=(0.485, 0.456, 0.406))
    assert (ra.magnitude, ra.magnitude_std, ra.num_ops, ra.prob, ra.increasing) == (9.0, 0.5, 2, 0.5, True)
    assert ra.fill == (124, 116, 104)  # round(255 * mean)
    assert ra.ops == INCREASING_OPS and len(ra.ops) == 15
    assert RandAugment.from_string("rand-m7-n3-p0.2").num_ops == 3
    with pytest.raises(ValueError, match="unknown part"):
        RandAugment.from_string("rand-m9-x1")
    with pytest.raises(ValueError, match="only RandAugment"):
        RandAugment.from_string("v0")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Rotate", 27.0),  # 30 * 9/10 degrees
        ("ShearX", 0.27),  # 0.3 * 9/10
        ("TranslateYRel", 0.405),  # 0.45 * 9/10 of the side
        ("ColorIncreasing", 0.81),  # factor 1 ± 0.9 * 9/10
        ("PosterizeIncreasing", 1),  # 4 - int(4 * 0.9) bits kept
        ("SolarizeIncreasing", 26),  # 256 - int(256 * 0.9)
        ("SolarizeAdd", 99),  # int(110 * 0.9)
        ("Equalize", None),
    ],
)
def test_magnitude_9_arguments(name, expected):
    assert op_argument(name, 9.0) == pytest.approx(expected)


def test_increasing_ops_grow_stronger_with_magnitude():
    for name in ("PosterizeIncreasing", "SolarizeIncreasing"):  # fewer bits / lower threshold = stronger
        assert op_argument(name, 10.0) < op_argument(name, 5.0) < op_argument(name, 0.0)
    for name in ("Rotate", "ShearY", "BrightnessIncreasing", "SolarizeAdd"):
        assert op_argument(name, 10.0) > op_argument(name, 5.0) > op_argument(name, 0.0)


def _gray(value: int, size: int = 16) -> Image.Image:
    return Image.new("RGB", (size, size), (value, value, value))


def test_op_effects_at_magnitude_9():
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc1")
    assert np.asarray(ra.apply_op(_gray(100), "SolarizeAdd", 9.0)).max() == 199
    assert np.asarray(ra.apply_op(_gray(200), "PosterizeIncreasing", 9.0)).max() == 128  # 1 bit kept
    assert np.asarray(ra.apply_op(_gray(30), "SolarizeIncreasing", 9.0)).max() == 225  # 30 >= 26: inverted
    bright = np.asarray(ra.apply_op(_gray(100), "BrightnessIncreasing", 9.0)).mean()
    dark = np.asarray(ra.apply_op(_gray(100), "BrightnessIncreasing", 9.0, negate=True)).mean()
    assert bright == pytest.approx(181, abs=1) and dark == pytest.approx(19, abs=1)
    ramp = Image.fromarray(np.tile(np.arange(200, dtype=np.uint8), (8, 1))).convert("RGB")
    moved = np.asarray(ra.apply_op(ramp, "TranslateXRel", 9.0)).astype(int)
    shift = 81  # 0.405 * 200 pixels, content moves left
    assert np.abs(moved[:, 1 : 200 - shift - 1, 0] - np.asarray(ramp)[:, shift + 1 : -1, 0]).max() <= 1
    assert (moved[:, 200 - shift + 1 :] == ra.fill).all()  # uncovered area takes the mean colour


def test_magnitude_noise_and_clipping():
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc1")
    rng = np.random.default_rng(0)
    m = np.array([ra.sample_magnitude(rng) for _ in range(4000)])
    assert m.max() <= 10.0 and m.min() >= 7.0
    assert (m == 10.0).mean() == pytest.approx(0.023, abs=0.01)  # P(N(9, 0.5) > 10)
    unclipped = m[m < 10.0]
    assert unclipped.mean() == pytest.approx(8.96, abs=0.05)


def test_two_ops_each_with_probability_half():
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc1")
    applied = []

    class Spy(RandAugment):
        def apply_op(self, img, name, magnitude, negate=False):
            applied.append(name)
            return img

    spy = Spy(**{f: getattr(ra, f) for f in ra.__dataclass_fields__})
    rng = np.random.default_rng(1)
    for _ in range(2000):
        spy(_gray(10), rng)
    assert len(applied) / 2000 == pytest.approx(1.0, abs=0.06)  # 2 ops x 0.5
    counts = np.array([applied.count(n) for n in INCREASING_OPS])
    assert counts.min() > 0.6 * counts.mean()  # uniform choice over the 15 ops


def test_reproducible_from_the_generator():
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc1")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8))
    a = [np.asarray(ra(img, np.random.default_rng(s))) for s in range(6)]
    b = [np.asarray(ra(img, np.random.default_rng(s))) for s in range(6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(a[0], x) for x in a[1:])


def _pillow12_posterize(a: np.ndarray, bits: int) -> np.ndarray:
    """Pillow ≤ 12's ImageOps.posterize, re-stated on the array: value & ~(2**(8 - bits) - 1); 0 bits → 0."""
    return a & np.uint8((0xFF << (8 - bits)) & 0xFF)


@pytest.fixture
def pillow13_posterize(monkeypatch):
    """ImageOps.posterize as Pillow 13 has it (ValueError outside 1..8 bits), whichever Pillow is installed."""
    from PIL import ImageOps

    real = ImageOps.posterize

    def posterize(image, bits):
        if not 1 <= bits <= 8:
            raise ValueError("bits must be between or equal to 1 and 8")
        return real(image, bits)

    monkeypatch.setattr(ImageOps, "posterize", posterize)


@pytest.mark.parametrize("magnitude", [10.0, 8.0, 5.0, 2.0, 0.0])
def test_posterize_increasing_equals_pillow_12_at_every_bit_count(pillow13_posterize, magnitude):
    """Clipped magnitude 10 asks for 0 bits: black, what Pillow ≤ 12 produced (Pillow 13 would raise)."""
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc1")
    a = np.random.default_rng(3).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    bits = op_argument("PosterizeIncreasing", magnitude)
    out = ra.apply_op(Image.fromarray(a), "PosterizeIncreasing", magnitude)
    assert out.mode == "RGB" and out.size == (13, 9)
    np.testing.assert_array_equal(np.asarray(out), _pillow12_posterize(a, bits))
    if magnitude == 10.0:
        assert bits == 0 and not np.asarray(out).any()


def test_default_posterize_at_magnitude_0_is_black(pillow13_posterize):
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc0")
    a = np.random.default_rng(4).integers(1, 256, (6, 5, 3), dtype=np.uint8)
    assert op_argument("Posterize", 0.0) == 0
    np.testing.assert_array_equal(np.asarray(ra.apply_op(Image.fromarray(a), "Posterize", 0.0)), 0 * a)


def test_clipped_magnitudes_do_not_stop_training(pillow13_posterize):
    """rand-m10: half the magnitudes clip to 10, so PosterizeIncreasing asks for 0 bits often; no call raises."""
    ra = RandAugment.from_string("rand-m10-mstd0.5-inc1-n4-p1.0")
    img = Image.fromarray(np.random.default_rng(5).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    rng = np.random.default_rng(6)
    for _ in range(300):  # 1200 ops, ~80 of them PosterizeIncreasing, ~40 of those at 0 bits
        ra(img, rng)


def test_the_reference_is_pillow_12s_own_posterize():
    """_pillow12_posterize equals Pillow ≤ 12's ImageOps.posterize bit for bit, 0 bits included."""
    import PIL
    from PIL import ImageOps

    if int(PIL.__version__.split(".")[0]) >= 13:
        pytest.skip(f"Pillow {PIL.__version__} refuses 0 bits; the reference is checked under Pillow ≤ 12")
    a = np.random.default_rng(7).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    for bits in range(9):
        np.testing.assert_array_equal(
            np.asarray(ImageOps.posterize(Image.fromarray(a), bits)), _pillow12_posterize(a, bits)
        )
