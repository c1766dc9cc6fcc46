"""Mixup / CutMix targets and the soft-target loss (timm's batch-mode Mixup with label smoothing)."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from shunted.data.mixup import Mixup, cutmix_box, mixup_target, smooth_one_hot, soft_target_cross_entropy


def _batch(n=4, k=5, size=8):
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(n, 3, size, size)).astype("float32"))
    y = paddle.to_tensor(np.arange(n) % k)
    return x, y


def test_smoothed_one_hot():
    t = smooth_one_hot(paddle.to_tensor([2, 0]), 10, 0.1).numpy()
    assert t[0, 2] == pytest.approx(0.91) and t[0, 0] == pytest.approx(0.01)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)


def test_mixup_target_is_lambda_weighted_with_the_flipped_batch():
    y = paddle.to_tensor([0, 1, 2, 3])
    t = mixup_target(y, 4, lam=0.7, smoothing=0.0).numpy()
    np.testing.assert_allclose(t[0], [0.7, 0, 0, 0.3], atol=1e-6)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)


def test_mixup_blends_images_and_targets():
    x, y = _batch()
    mix = Mixup(5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)
    rng = np.random.default_rng(3)
    lam, _ = mix.sample(np.random.default_rng(3))
    xm, t = mix(x, y, rng)
    np.testing.assert_allclose(xm.numpy(), lam * x.numpy() + (1 - lam) * x.numpy()[::-1], atol=1e-6)
    assert t.numpy()[0, 0] == pytest.approx(lam, abs=1e-6)


def test_cutmix_pastes_a_box_and_corrects_lambda():
    x, y = _batch(size=16)
    mix = Mixup(5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    for seed in range(5):
        xm, t = mix(x, y, np.random.default_rng(seed))
        pasted = (xm.numpy() != x.numpy()).any(axis=1)[0]  # where image 0 took image 3's pixels
        area = pasted.sum() / 256
        assert t.numpy()[0, 0] == pytest.approx(1 - area, abs=1e-6)
        if pasted.any():
            rows, cols = np.nonzero(pasted)
            assert (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) == pasted.sum()  # a box


def test_cutmix_box_side_is_sqrt_one_minus_lambda():
    y0, y1, x0, x1 = cutmix_box(100, 100, 0.64, np.random.default_rng(0))
    assert y1 - y0 <= 60 and x1 - x0 <= 60  # 100 * sqrt(0.36), clipped at the border
    boxes = [cutmix_box(100, 100, 0.64, np.random.default_rng(s)) for s in range(50)]
    assert max(b[1] - b[0] for b in boxes) == 60


def test_switch_probability_between_cutmix_and_mixup():
    mix = Mixup(10)  # recipe: mixup 0.8, cutmix 1.0, switch 0.5, prob 1
    rng = np.random.default_rng(0)
    draws = [mix.sample(rng) for _ in range(4000)]
    assert np.mean([c for _, c in draws]) == pytest.approx(0.5, abs=0.03)
    mix_lams = np.array([lam for lam, c in draws if not c])
    assert mix_lams.mean() == pytest.approx(0.5, abs=0.03)  # Beta(0.8, 0.8) is symmetric
    assert ((mix_lams < 0.1) | (mix_lams > 0.9)).mean() > 0.2  # and U-shaped
    off = Mixup(10, prob=0.0)
    assert off.sample(rng) == (1.0, False)


def test_soft_target_loss_equals_label_smoothing_cross_entropy():
    logits = np.random.default_rng(1).normal(size=(6, 7)).astype("float32")
    labels = np.array([0, 3, 6, 2, 2, 5])
    eps = 0.1
    target = smooth_one_hot(paddle.to_tensor(labels), 7, eps)
    got = float(soft_target_cross_entropy(paddle.to_tensor(logits), target))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    nll = -logp[np.arange(6), labels]
    expected = ((1 - eps) * nll + eps * (-logp.mean(1))).mean()  # timm's LabelSmoothingCrossEntropy
    assert got == pytest.approx(expected, rel=1e-5)


def test_odd_batch_is_refused_when_mixing():
    x, y = _batch(n=3)
    with pytest.raises(ValueError, match="even batch"):
        Mixup(5, prob=1.0)(x, y, np.random.default_rng(0))


# -- against timm's behaviour (tests/reference/official_recipe_torch.py), given the same draws ----------------
MIX_SETTINGS = {
    "recipe": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5},
    "mixup only, prob 0.7": {"mixup_alpha": 0.8, "cutmix_alpha": 0.0, "prob": 0.7, "switch_prob": 0.5},
    "cutmix only": {"mixup_alpha": 0.0, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5},
    "switch 0.8, prob 0.5": {"mixup_alpha": 0.4, "cutmix_alpha": 2.0, "prob": 0.5, "switch_prob": 0.8},
}


@pytest.mark.parametrize("name", list(MIX_SETTINGS))
def test_mixup_and_cutmix_match_timm_given_the_same_draws(name):
    """Same generator state → same λ, switch, box, mixed images and smoothed mixed targets as timm's batch-mode
    ``Mixup`` (each image with the flipped batch; CutMix λ corrected to the pasted area)."""
    torch = pytest.importorskip("torch")
    from reference import official_recipe_torch as R

    kw, k = MIX_SETTINGS[name], 7
    seen = set()
    for seed in range(40):
        data = np.random.default_rng(seed)
        x = data.normal(size=(6, 3, 12, 20)).astype("float32")  # H ≠ W: a swapped axis would show
        y = data.integers(0, k, size=6)
        ours_x, ours_t = Mixup(k, label_smoothing=0.1, **kw)(
            paddle.to_tensor(x), paddle.to_tensor(y), np.random.default_rng([seed, 1])
        )
        ref = R.Mixup(**kw, label_smoothing=0.1, num_classes=k)
        ref_x, ref_t = ref(
            torch.from_numpy(x.copy()),
            torch.from_numpy(y),
            R.GeneratorDraws(np.random.default_rng([seed, 1])),
        )
        np.testing.assert_allclose(ours_x.numpy(), ref_x.numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours_t.numpy(), ref_t.numpy(), rtol=0, atol=1e-7)
        lam, cut, box = ref.last
        seen.add("cutmix" if cut else "none" if lam == 1.0 else "mixup")
        if cut and (box[1] == box[0] or box[3] == box[2]):
            seen.add("empty box")  # λ corrected to 1: nothing pasted (Paddle refused the empty slice before)
    expected = {"none"} if kw["prob"] < 1 else set()
    expected |= {"mixup"} if kw["mixup_alpha"] > 0 else set()
    expected |= {"cutmix"} if kw["cutmix_alpha"] > 0 else set()
    assert seen - {"empty box"} == expected
    if name == "cutmix only":
        assert "empty box" in seen  # 12 × 20 images: side-1 boxes halve to nothing now and then


def test_cutmix_with_an_empty_box_leaves_the_batch_alone():
    """λ close to 1 gives a box of side int(H·√(1−λ)) // 2 · 2 = 0: timm pastes nothing and sets λ = 1."""
    x, y = _batch(size=16)

    class NearOne(np.random.Generator):
        def beta(self, a, b, size=None):
            return 0.999  # √(1 − λ) · 16 ≈ 0.5 → a box of side 0

    mix = Mixup(5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    xm, t = mix(x, y, NearOne(np.random.PCG64(0)))
    np.testing.assert_array_equal(xm.numpy(), x.numpy())
    np.testing.assert_array_equal(t.numpy(), smooth_one_hot(y, 5).numpy())


def test_losses_match_timm():
    """SoftTargetCrossEntropy on mixed targets, and LabelSmoothingCrossEntropy on plain labels (targets smoothed
    by ``mixup_target`` with λ = 1), as timm computes them."""
    torch = pytest.importorskip("torch")
    from reference import official_recipe_torch as R

    rng = np.random.default_rng(5)
    logits = rng.normal(size=(8, 10)).astype("float32") * 3
    labels = rng.integers(0, 10, size=8)
    mixed = R.mixup_target(torch.from_numpy(labels), 10, lam=0.3, smoothing=0.1)
    ours = float(soft_target_cross_entropy(paddle.to_tensor(logits), paddle.to_tensor(mixed.numpy())))
    assert ours == pytest.approx(float(R.SoftTargetCrossEntropy()(torch.from_numpy(logits), mixed)), rel=1e-6)
    plain = smooth_one_hot(paddle.to_tensor(labels), 10, 0.1)
    ours = float(soft_target_cross_entropy(paddle.to_tensor(logits), plain))
    timm = float(R.LabelSmoothingCrossEntropy(0.1)(torch.from_numpy(logits), torch.from_numpy(labels)))
    assert ours == pytest.approx(timm, rel=1e-6)
