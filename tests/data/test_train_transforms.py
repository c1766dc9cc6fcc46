"""Training augmentation: RandomResizedCrop geometry, random erasing, colour jitter rule, per-sample seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from shunted.data.datasets import list_samples
from shunted.data.train_transforms import (
    SeededImageDataset,
    TrainTransform,
    random_erasing,
    random_resized_crop_box,
)


def test_random_resized_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(500):
        top, left, h, w = random_resized_crop_box(200, 150, rng)
        assert 0 <= top <= 150 - h and 0 <= left <= 200 - w
        assert 0.08 * 0.9 <= h * w / (200 * 150) <= 1.0
        assert math.log(3 / 4) - 0.05 <= math.log(w / h) <= math.log(4 / 3) + 0.05


def test_random_resized_crop_falls_back_to_the_clamped_centre():
    rng = np.random.default_rng(0)
    assert random_resized_crop_box(300, 100, rng, scale=(2.0, 3.0)) == (
        0,
        83,
        100,
        133,
    )  # ratio clamped to 4/3
    assert random_resized_crop_box(100, 100, rng, scale=(2.0, 3.0)) == (0, 0, 100, 100)


def test_random_erasing_pixel_mode():
    rng = np.random.default_rng(0)
    fractions = []
    for _ in range(200):
        x = np.full((3, 32, 32), 5.0, np.float32)
        random_erasing(x, rng, prob=1.0, mode="pixel")
        erased = (x != 5.0).all(axis=0)
        fractions.append(erased.mean())
        if erased.any():
            assert abs(float(x[:, erased].std()) - 1.0) < 0.5  # per-pixel N(0, 1)
    assert 0.02 * 0.8 <= min(f for f in fractions if f) and max(fractions) <= 1 / 3 + 0.02
    x = np.zeros((3, 8, 8), np.float32)
    assert not random_erasing(x, rng, prob=0.0).any()


def test_colour_jitter_is_ignored_when_auto_augment_is_set():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    with_cj = TrainTransform(img_size=32, color_jitter=0.4)
    without = TrainTransform(img_size=32, color_jitter=None)
    for s in range(5):
        a = with_cj(img, np.random.default_rng(s))
        b = without(img, np.random.default_rng(s))
        assert np.array_equal(a, b)
    plain = TrainTransform(img_size=32, auto_augment=None, color_jitter=0.4, re_prob=0)
    plain_nocj = TrainTransform(img_size=32, auto_augment=None, color_jitter=None, re_prob=0)
    assert not np.array_equal(plain(img, np.random.default_rng(0)), plain_nocj(img, np.random.default_rng(0)))


def test_bad_settings_fail_early():
    with pytest.raises(ValueError, match="auto_augment"):
        TrainTransform(auto_augment="autoaug-v0")
    with pytest.raises(ValueError, match="re_mode"):
        TrainTransform(re_mode="zeros")


def test_seeded_dataset_reproducible_per_epoch_and_sample(shared_dir):
    samples = list_samples(shared_dir / "data" / "cifar10" / "train-5k").head(3)
    ds = SeededImageDataset(samples, TrainTransform(img_size=32), seed=1)
    first = [ds[i][0] for i in range(3)]
    assert first[0].shape == (3, 32, 32) and first[0].dtype == np.float32
    again = SeededImageDataset(samples, TrainTransform(img_size=32), seed=1)
    assert all(np.array_equal(a, again[i][0]) for i, a in enumerate(first))
    assert np.array_equal(ds[(0, 0)][0], first[0]) and not np.array_equal(ds[(0, 1)][0], first[0])  # copies
    assert ds[(2, 1)][1:] == (samples.labels[2], 2)
    ds.set_epoch(1)
    assert not np.array_equal(first[0], ds[0][0])
    other_seed = SeededImageDataset(samples, TrainTransform(img_size=32), seed=2)
    assert not np.array_equal(first[0], other_seed[0][0])
