"""The model's structure and API: epsilons, parameter counts, names, stage maps, head, decay set, export."""

from __future__ import annotations

import re

import numpy as np
import paddle
import pytest

from shunted import create_model
from shunted.convert.mapping import torch_to_paddle
from shunted.models.registry import VARIANTS

# (name pattern, norm type, epsilon) from SPEC.md: 1e-6 in blocks and stage norms, 1e-5 in the stem, the patch
# embeddings and the attention's sr norms; BatchNorm keeps PyTorch's default 1e-5.
NORM_EPS = (
    (r"patch_embed1\.conv\.\d+", paddle.nn.BatchNorm2D, 1e-5),
    (r"patch_embed[1-4]\.norm", paddle.nn.LayerNorm, 1e-5),
    (r"block[1-3]\.\d+\.attn\.norm[12]", paddle.nn.LayerNorm, 1e-5),
    (r"block[1-4]\.\d+\.norm[12]", paddle.nn.LayerNorm, 1e-6),
    (r"norm[1-4]", paddle.nn.LayerNorm, 1e-6),
)
NORM_TYPES = (paddle.nn.LayerNorm, paddle.nn.BatchNorm2D, paddle.nn.BatchNorm, paddle.nn.GroupNorm)
CHANNELS = (64, 128, 256, 512)
STRIDES = (4, 8, 16, 32)


def _expected_norm_count(name: str) -> int:
    depths, num_conv = VARIANTS[name].depths, VARIANTS[name].num_conv
    blocks = sum(depths)
    sr_blocks = sum(depths[:3])
    return (
        (1 + num_conv) + 4 + 2 * blocks + 2 * sr_blocks + 4
    )  # BN, embed norms, block norms, sr norms, stage


def _trainable(model: paddle.nn.Layer) -> int:
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def _rng_input(*shape: int, seed: int = 0) -> paddle.Tensor:
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.fixture(scope="module")
def tiny() -> paddle.nn.Layer:
    model = create_model("shunted_t")
    model.eval()
    return model


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_norm_has_the_official_epsilon(name):
    model = create_model(name)
    seen = 0
    for layer_name, layer in model.named_sublayers():
        if not isinstance(layer, NORM_TYPES):
            continue
        rules = [(t, eps) for pattern, t, eps in NORM_EPS if re.fullmatch(pattern, layer_name)]
        assert len(rules) == 1, f"{layer_name}: {type(layer).__name__} matches {len(rules)} rules"
        kind, eps = rules[0]
        assert isinstance(layer, kind), f"{layer_name}: {type(layer).__name__}, expected {kind.__name__}"
        assert layer._epsilon == pytest.approx(eps, rel=1e-6), f"{layer_name}: eps {layer._epsilon} != {eps}"
        if isinstance(layer, paddle.nn.BatchNorm2D):
            assert layer._momentum == pytest.approx(0.9), (
                f"{layer_name}: momentum (PyTorch's 0.1 is Paddle's 0.9)"
            )
        seen += 1
    assert seen == _expected_norm_count(name)


def test_reference_norms_carry_the_same_epsilons(reference):
    """The PyTorch transcription agrees with the Paddle model, norm by norm (a check on the reference too)."""
    torch = pytest.importorskip("torch")
    ref = reference.build("shunted_s")
    ref_eps = {
        n: m.eps for n, m in ref.named_modules() if isinstance(m, torch.nn.LayerNorm | torch.nn.BatchNorm2d)
    }
    model = create_model("shunted_s")
    eps = {n: m._epsilon for n, m in model.named_sublayers() if isinstance(m, NORM_TYPES)}
    assert eps.keys() == ref_eps.keys()
    assert all(eps[n] == pytest.approx(ref_eps[n], rel=1e-6) for n in eps)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_trainable_parameter_count_is_official(name):
    expected = {"shunted_t": 11_553_576, "shunted_s": 22_401_256, "shunted_b": 39_614_376}[name]
    assert VARIANTS[name].official_params == expected
    assert _trainable(create_model(name)) == expected


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "shunted_b" else n for n in VARIANTS]
)
def test_state_dict_matches_reference_after_mapping(name, reference):
    ref = reference.build(name, num_classes=1000)
    assert sum(p.numel() for p in ref.parameters() if p.requires_grad) == VARIANTS[name].official_params
    expected = {k: tuple(v.shape) for k, v in torch_to_paddle(reference.state_dict_numpy(ref)).items()}
    got = {k: tuple(v.shape) for k, v in create_model(name).state_dict().items()}
    assert sorted(got) == sorted(expected), (
        f"missing {sorted(set(expected) - set(got))[:5]}, extra {sorted(set(got) - set(expected))[:5]}"
    )
    assert got == expected


@pytest.mark.parametrize("out_indices", [(0, 1, 2, 3), (1, 3)])
def test_features_only_returns_stage_maps(out_indices):
    model = create_model("shunted_t", features_only=True, out_indices=out_indices)
    model.eval()
    height, width = 64, 96
    with paddle.no_grad():
        maps = model(_rng_input(2, 3, height, width))
    assert isinstance(maps, list | tuple) and len(maps) == len(out_indices)
    info = {f["module"]: f for f in model.feature_info}
    for idx, fmap in zip(out_indices, maps, strict=True):
        assert tuple(fmap.shape) == (2, CHANNELS[idx], height // STRIDES[idx], width // STRIDES[idx])
        stage = info[f"norm{idx + 1}"]
        assert (stage["num_chs"], stage["reduction"]) == (CHANNELS[idx], STRIDES[idx])


def test_feature_info_describes_the_stages(tiny):
    assert [f["num_chs"] for f in tiny.feature_info] == list(CHANNELS)
    assert [f["reduction"] for f in tiny.feature_info] == list(STRIDES)
    with paddle.no_grad():
        maps = tiny.forward_stages(_rng_input(1, 3, 96, 64))
    assert [tuple(m.shape) for m in maps] == [
        (1, c, 96 // s, 64 // s) for c, s in zip(CHANNELS, STRIDES, strict=True)
    ]


@pytest.mark.parametrize("shape", [(1, 3, 100, 224), (1, 3, 224, 200), (1, 3, 16, 16)])
def test_size_not_multiple_of_32_is_a_clear_error(tiny, shape):
    with pytest.raises(ValueError, match=r"multiples? of 32") as info:
        tiny(paddle.zeros(shape))
    assert str(shape[2]) in str(info.value) or str(shape[3]) in str(info.value), (
        "message should show the size"
    )


def test_reset_classifier_changes_the_output():
    model = create_model("shunted_t")
    model.eval()
    x = _rng_input(2, 3, 64, 64)
    with paddle.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
    assert tuple(model(x).shape) == (2, 1000)

    model.reset_classifier(7)
    head = dict(model.named_parameters())
    assert tuple(head["head.weight"].shape) == (512, 7) and not head["head.weight"].stop_gradient
    with paddle.no_grad():
        logits = model(x).numpy()
    assert logits.shape == (2, 7)
    weight, bias = head["head.weight"].numpy(), head["head.bias"].numpy()
    np.testing.assert_allclose(logits, pooled @ weight + bias, rtol=1e-5, atol=1e-5)

    model.reset_classifier(0)
    with paddle.no_grad():
        features = model(x).numpy()
    assert features.shape == (2, 512)
    np.testing.assert_allclose(features, pooled, rtol=1e-6, atol=1e-6)
    assert not any(k.startswith("head.") for k in model.state_dict())


def test_no_weight_decay_holds_biases_and_norm_scales_only(tiny):
    params = dict(tiny.named_parameters())
    skip = tiny.no_weight_decay()
    assert skip <= params.keys(), f"unknown names {sorted(set(skip) - params.keys())[:5]}"
    assert all(len(params[k].shape) == 1 for k in skip), [k for k in skip if len(params[k].shape) != 1][:5]
    trainable_1d = {k for k, p in params.items() if len(p.shape) == 1 and not p.stop_gradient}
    assert trainable_1d <= skip, sorted(trainable_1d - skip)[:5]
    assert {"head.bias", "norm4.weight", "block1.0.attn.norm1.weight", "patch_embed1.conv.1.weight"} <= skip
    assert not {"head.weight", "block1.0.attn.q.weight", "patch_embed1.conv.0.weight"} & skip


def _drop_path_rates(model: paddle.nn.Layer) -> list[float]:
    found = []
    for name, layer in model.named_sublayers():
        m = re.fullmatch(r"block(\d)\.(\d+)\.drop_path", name)
        if m:
            found.append(((int(m[1]), int(m[2])), float(getattr(layer, "drop_prob", 0.0))))
    return [rate for _, rate in sorted(found)]


@pytest.mark.parametrize("name", ["shunted_t", pytest.param("shunted_b", marks=pytest.mark.slow)])
def test_drop_path_rises_linearly(name):
    rate = VARIANTS[name].drop_path_rate
    rates = _drop_path_rates(create_model(name, drop_path_rate=rate))
    assert len(rates) == sum(VARIANTS[name].depths)
    np.testing.assert_allclose(rates, np.linspace(0, rate, len(rates)), rtol=1e-6, atol=1e-7)
    assert all(r == 0 for r in _drop_path_rates(create_model(name)))  # inference default: no drop path


@pytest.mark.filterwarnings("ignore:When training, we now always track:UserWarning")
def test_drop_path_is_off_in_eval_mode():
    plain = create_model("shunted_t")
    dropping = create_model("shunted_t", drop_path_rate=0.5)
    dropping.set_state_dict(plain.state_dict())
    x = _rng_input(2, 3, 64, 64)
    plain.eval()
    dropping.eval()
    with paddle.no_grad():
        first, second, reference = dropping(x).numpy(), dropping(x).numpy(), plain(x).numpy()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, reference)
    dropping.train()
    with paddle.no_grad():
        trained = [dropping(x).numpy() for _ in range(3)]
    assert any(not np.array_equal(trained[0], t) for t in trained[1:]), "drop path never fired in train mode"


def test_paddle_hub_loads_from_the_repository(repo_root):
    model = paddle.hub.load(str(repo_root), "shunted_t", source="local", num_classes=10)
    assert model.variant.name == "shunted_t"
    assert _trainable(model) == VARIANTS["shunted_t"].official_params - 990 * 513
    model.eval()
    with paddle.no_grad():
        assert tuple(model(paddle.zeros([1, 3, 64, 64])).shape) == (1, 10)


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_jit_export_with_dynamic_batch(tmp_path, relative_error):
    model = create_model("shunted_t")
    model.eval()
    inputs = {batch: _rng_input(batch, 3, 224, 224, seed=batch) for batch in (1, 3)}
    with paddle.no_grad():
        expected = {batch: model(x).numpy() for batch, x in inputs.items()}  # dygraph, before conversion
    spec = paddle.static.InputSpec([None, 3, 224, 224], "float32", "image")
    path = str(tmp_path / "shunted_t")
    paddle.jit.save(paddle.jit.to_static(model, input_spec=[spec], full_graph=True), path, input_spec=[spec])
    loaded = paddle.jit.load(path)
    loaded.eval()
    for batch, x in inputs.items():
        with paddle.no_grad():
            actual = loaded(x).numpy()
        assert actual.shape == (batch, 1000)
        err = relative_error(actual, expected[batch])
        assert err <= 1e-5, f"batch {batch}: exported model differs from dygraph by {err:.3g}"
