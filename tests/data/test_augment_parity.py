"""The training augmentation against timm's behaviour (tests/reference/official_recipe_torch.py), where it is
deterministic given the random draws: RandomResizedCrop's box, random erasing, and RandAugment's parameters and
ops. Both sides get generators in the same state (``GeneratorDraws`` answers timm's calls), so equal outputs mean
the same draws are consumed in the same order for the same purpose.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shunted.data.randaugment import RandAugment
from shunted.data.train_transforms import TrainTransform, random_erasing, random_resized_crop_box

torch = pytest.importorskip("torch")
from reference import official_recipe_torch as R  # noqa: E402


@pytest.mark.parametrize(
    ("size", "scale", "ratio"),
    [
        ((500, 375), (0.08, 1.0), (3 / 4, 4 / 3)),  # the recipe on an ImageNet-like image
        ((32, 32), (0.08, 1.0), (3 / 4, 4 / 3)),
        ((300, 40), (0.9, 1.0), (3 / 4, 4 / 3)),  # wide: the ten tries fail, clamped centre crop
        ((40, 300), (0.9, 1.0), (3 / 4, 4 / 3)),  # tall
        ((64, 64), (1.0, 1.0), (1.0, 1.0)),  # the parity tests' "augmentation off": the whole image
    ],
)
def test_random_resized_crop_box_matches_timm(size, scale, ratio):
    width, height = size
    for seed in range(200):
        ours = random_resized_crop_box(width, height, np.random.default_rng(seed), scale, ratio)
        timm = R.rrc_get_params(width, height, scale, ratio, R.GeneratorDraws(np.random.default_rng(seed)))
        assert ours == timm, seed


@pytest.mark.parametrize("mode", ["pixel", "rand", "const"])
@pytest.mark.parametrize("count", [1, 3])
def test_random_erasing_matches_timm(mode, count):
    """``RandomErasing(re_prob, mode=re_mode, max_count=re_count)`` on the normalised image: same boxes, same
    fill; with re_count > 1 the number of boxes is itself drawn from 1..re_count."""
    erased = 0
    for seed in range(100):
        x = np.random.default_rng([seed, 9]).normal(size=(3, 24, 40)).astype("float32")
        ours = random_erasing(x.copy(), np.random.default_rng(seed), 0.5, mode, count)
        erasing = R.RandomErasing(0.5, mode=mode, max_count=count)
        timm = erasing(torch.from_numpy(x.copy()), R.GeneratorDraws(np.random.default_rng(seed))).numpy()
        np.testing.assert_array_equal(ours, timm)
        erased += not np.array_equal(ours, x)
    assert 30 < erased < 70  # probability 0.5


def test_randaugment_parameters_match_timm():
    """``rand-m9-mstd0.5-inc1`` as timm parses it, and the hyper-parameters ``create_transform`` gives it."""
    ours = TrainTransform().randaugment
    timm = R.rand_augment_params("rand-m9-mstd0.5-inc1")
    hp = R.aa_hparams()
    assert (ours.magnitude, ours.magnitude_std, ours.num_ops, ours.prob) == (
        timm["magnitude"],
        timm["magnitude_std"],
        timm["num_layers"],
        timm["prob"],
    )
    assert list(ours.ops) == timm["ops"] == R.RAND_INCREASING_TRANSFORMS
    assert ours.fill == hp["img_mean"] == (124, 116, 104)
    assert ours.interpolation == "bicubic" and ours.translate_pct == 0.45
    plain = RandAugment.from_string("rand-m7-n3-mstd1.0")
    timm = R.rand_augment_params("rand-m7-n3-mstd1.0")
    assert (plain.magnitude, plain.num_ops, plain.magnitude_std) == (7, 3, 1.0)
    assert list(plain.ops) == timm["ops"] == R.RAND_TRANSFORMS


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8)
    base[:10] //= 3  # some structure, so that autocontrast / equalize / enhance have something to do
    return Image.fromarray(base)


@pytest.mark.parametrize("increasing", [True, False])
def test_every_randaugment_op_matches_timm_at_given_magnitude_and_sign(image, increasing):
    """Each op at magnitudes 0 … 9.9 and both signs: pixel-identical to timm's op with timm's level → argument
    (Rotate 30°·m/10, Shear 0.3·m/10, Translate 0.45·m/10 of the side, enhance 1 ± 0.9·m/10, posterize / solarize
    levels, SolarizeAdd 110·m/10), fill colour and bicubic resampling."""
    ra = RandAugment(increasing=increasing)
    hp = R.aa_hparams()
    for name in ra.ops:
        for magnitude in (0.0, 2.5, 5.0, 9.0, 9.9):
            for negate in (False, True):
                ours = np.asarray(ra.apply_op(image, name, magnitude, negate))
                timm = np.asarray(R.apply_op(image, name, magnitude, negate, hp))
                np.testing.assert_array_equal(ours, timm, err_msg=f"{name} m={magnitude} negate={negate}")
