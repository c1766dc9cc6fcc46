"""The optimiser and schedule of the recipe: warm-up + cosine values, lr scaling, no decay on 1-D params."""

from __future__ import annotations

import math

import numpy as np
import paddle
import pytest

from shunted import create_model
from shunted.engine.train.optim import (
    WarmupCosineLR,
    build_optimizer,
    decay_param_names,
    scaled_lr,
    warmup_cosine_lr,
)

PEAK = 1e-3  # 5e-4 x 1024 / 512, the official total batch


def test_lr_scaling():
    assert scaled_lr(5e-4, 128 * 8) == pytest.approx(PEAK)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, 1e-6),
        (1, 1e-6 + (PEAK - 1e-6) / 5),
        (2.5, 1e-6 + 2.5 * (PEAK - 1e-6) / 5),
        (5, 1e-5 + 0.5 * (PEAK - 1e-5) * (1 + math.cos(math.pi * 5 / 300))),  # not shifted by the warm-up
        (150, 1e-5 + 0.5 * (PEAK - 1e-5)),
        (299, 1e-5 + 0.5 * (PEAK - 1e-5) * (1 + math.cos(math.pi * 299 / 300))),
        (300, 1e-5),
    ],
)
def test_warmup_cosine_values(t, expected):
    assert warmup_cosine_lr(t, PEAK, 300) == pytest.approx(expected, rel=1e-12)


def test_scheduler_follows_the_function_and_keeps_its_position():
    sched = WarmupCosineLR(PEAK, 300)
    assert sched() == pytest.approx(1e-6)
    sched.step(7)
    assert sched() == pytest.approx(warmup_cosine_lr(7, PEAK, 300))
    other = WarmupCosineLR(PEAK, 300)
    other.set_state_dict(sched.state_dict())
    other.step()
    assert other() == pytest.approx(warmup_cosine_lr(8, PEAK, 300))


def test_no_weight_decay_on_one_dim_params():
    model = create_model("shunted_t", num_classes=10)
    decay = decay_param_names(model)
    params = dict(model.named_parameters())
    assert {p.name for p in params.values() if p.ndim == 1}.isdisjoint(decay)
    assert {p.name for p in params.values() if p.ndim > 1 and not p.stop_gradient} == decay
    assert params["head.weight"].name in decay and params["head.bias"].name not in decay


def test_adamw_step_decays_only_matrices():
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.LayerNorm(3))
    model.no_weight_decay = lambda: {n for n, p in model.named_parameters() if p.ndim <= 1}
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    opt = build_optimizer(model, 0.1, weight_decay=0.05)
    (model(paddle.ones([2, 4])) * 0.0).sum().backward()  # zero gradients: only decay moves weights
    opt.step()
    after = {n: p.numpy() for n, p in model.named_parameters()}
    np.testing.assert_allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.05), rtol=1e-6)
    for name in ("0.bias", "1.weight", "1.bias"):
        np.testing.assert_array_equal(after[name], before[name])


def test_grad_clip_by_global_norm():
    model = paddle.nn.Linear(4, 3)
    model.no_weight_decay = lambda: set()
    assert isinstance(build_optimizer(model, 0.1, grad_clip=1.0)._grad_clip, paddle.nn.ClipGradByGlobalNorm)
    assert build_optimizer(model, 0.1)._grad_clip is None


def test_repeated_augmentation_sampler():
    from shunted.engine.train.sampler import RepeatedAugBatchSampler

    ranks = [RepeatedAugBatchSampler(600, 8, repeats=3, num_replicas=2, rank=r, seed=1) for r in range(2)]
    keys = [[k for batch in s for k in batch] for s in ranks]
    assert [len(k) for k in keys] == [256, 256]  # 600 // 256 * 256 / 2 per process, 32 batches of 8
    both = keys[0] + keys[1]
    assert len(set(both)) == len(both)  # each (index, copy) once
    copies = {}
    for index, copy in both:
        copies.setdefault(index, set()).add(copy)
    assert max(len(c) for c in copies.values()) == 3 and len(copies) < 200  # ~n/3 images, three copies each
    first, second = keys[0][0][0], keys[1][0][0]
    assert first == second  # consecutive copies of one image go to different processes
    ranks[0].set_epoch(1)
    assert [k for b in ranks[0] for k in b] != keys[0]
    assert len(RepeatedAugBatchSampler(30, 8)) == 3  # small sets: n // world, not DeiT's empty epoch


def test_decay_groups_match_timm_add_weight_decay_on_the_reference_model(reference):
    """Same parameters decayed as timm's ``add_weight_decay`` on the official module tree (none on 1-D
    parameters and ``*.bias``)."""
    from reference import official_recipe_torch as R

    model = create_model("shunted_t", num_classes=10)
    ours = {n for n, p in model.named_parameters() if p.name in decay_param_names(model)}
    torch_model = reference.build("shunted_t", 10)
    no_decay, decay = R.add_weight_decay(torch_model, 0.05)
    by_id = {id(p): n for n, p in torch_model.named_parameters()}
    assert ours == {by_id[id(p)] for p in decay["params"]}
    assert len(no_decay["params"]) > 0 and no_decay["weight_decay"] == 0.0
