"""The Paddle network computes what SPEC.md's network computes: parity with the independent PyTorch reference.

Every weight, BatchNorm statistic and LayerNorm scale/shift is drawn at random in the reference, mapped into
Paddle by the two rules (transpose Linear weights; rename BN buffers), and the outputs compared on the same input.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import paddle
import pytest

from shunted import create_model
from shunted.convert.mapping import torch_to_paddle
from shunted.models.weights import apply_state_dict

torch = pytest.importorskip("torch")

TOL = 2e-6  # ‖Δ‖/‖ref‖: float32 rounding only (measured ≈ 6e-7 for the logits, ≈ 1e-6 for stage 4)
VARIANTS = ("shunted_t", "shunted_s", "shunted_b")
CLASSES = (1000, 37)
SIZES = ((224, 224), (256, 256), (224, 288))
BATCH = 2


@dataclass
class Pair:
    """A randomised reference and the Paddle model that received its weights."""

    name: str
    num_classes: int
    ref: torch.nn.Module
    model: paddle.nn.Layer


def _make_pair(reference, load_torch_state, name: str, num_classes: int) -> Pair:
    seed = zlib.crc32(f"{name}/{num_classes}".encode())
    ref = reference.randomize_(reference.build(name, num_classes), seed=seed)
    model = create_model(name, num_classes=num_classes)
    model.eval()
    load_torch_state(model, ref.state_dict())
    return Pair(name, num_classes, ref, model)


def _input(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH, 3, height, width)).astype(np.float32)


def _size_id(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _case(*params, size):
    """T at every size in the fast suite; S and B at 224x224 there (B's 37-class head in the slow stage), at the
    other sizes in the slow stage."""
    fast = params[0] == "shunted_t" or (size == (224, 224) and params[:2] != ("shunted_b", 37))
    ident = "-".join(str(p) for p in params) + f"-{_size_id(size)}"
    return pytest.param(*params, size, id=ident, marks=() if fast else pytest.mark.slow)


@pytest.fixture(scope="module")
def pairs(reference, load_torch_state):
    """``pairs(name, num_classes)``: a randomised reference and its Paddle twin, built once per module."""
    cache: dict[tuple[str, int], Pair] = {}

    def get(name: str, num_classes: int) -> Pair:
        if (name, num_classes) not in cache:
            cache[name, num_classes] = _make_pair(reference, load_torch_state, name, num_classes)
        return cache[name, num_classes]

    return get


@pytest.mark.parametrize(
    ("name", "num_classes", "size"), [_case(v, c, size=s) for v in VARIANTS for c in CLASSES for s in SIZES]
)
def test_logits_match_reference(pairs, name, num_classes, size, relative_error):
    pair = pairs(name, num_classes)
    x = _input(*size)
    with torch.no_grad():
        expected = pair.ref(torch.from_numpy(x)).numpy()
    with paddle.no_grad():
        actual = pair.model(paddle.to_tensor(x)).numpy()
    assert actual.shape == expected.shape == (BATCH, pair.num_classes)
    err = relative_error(actual, expected)
    assert err <= TOL, f"{pair.name} {pair.num_classes} classes {size}: logits rel err {err:.3g} > {TOL}"


@pytest.mark.parametrize(("name", "size"), [_case(v, size=s) for v in VARIANTS for s in SIZES])
def test_stage_maps_match_reference(pairs, name, size, relative_error):
    backbone_pair = pairs(name, 1000)
    x = _input(*size, seed=1)
    with torch.no_grad():
        expected = [t.numpy() for t in backbone_pair.ref.forward_stages(torch.from_numpy(x))]
    with paddle.no_grad():
        actual = [t.numpy() for t in backbone_pair.model.forward_stages(paddle.to_tensor(x))]
    assert len(actual) == len(expected) == 4
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a.shape == e.shape, f"stage {i + 1}: shape {a.shape} vs reference {e.shape}"
        err = relative_error(a, e)
        assert err <= TOL, f"{backbone_pair.name} {size} stage {i + 1}: rel err {err:.3g} > {TOL}"


@pytest.fixture(scope="module")
def tiny_reference(reference):
    """Shunted-T reference (random weights), its official-layout state and its logits at 224."""
    ref = reference.randomize_(reference.build("shunted_t"), seed=7)
    x = _input(224, 224, seed=2)
    with torch.no_grad():
        logits = ref(torch.from_numpy(x)).numpy()
    return reference.state_dict_numpy(ref), x, logits


@pytest.mark.parametrize(
    "key",
    [
        "block1.0.attn.q.weight",
        "block1.0.attn.kv1.weight",
        "block3.1.attn.kv2.weight",
        "block4.0.attn.proj.weight",
    ],
)
def test_untransposed_square_linear_fails_parity(tiny_reference, key, relative_error):
    """Mutation test: a square Linear weight left in PyTorch layout loads without complaint — only parity sees it."""
    state, x, expected = tiny_reference
    mapped = torch_to_paddle(state)
    assert mapped[key].shape[0] == mapped[key].shape[1], f"{key} is not square"
    model = create_model("shunted_t")
    model.eval()

    apply_state_dict(model, mapped)  # the correct mapping passes
    with paddle.no_grad():
        good = relative_error(model(paddle.to_tensor(x)).numpy(), expected)
    assert good <= TOL

    apply_state_dict(model, {**mapped, key: state[key]})  # shapes fit, so strict loading accepts the mistake
    with paddle.no_grad():
        bad = relative_error(model(paddle.to_tensor(x)).numpy(), expected)
    assert bad > 1000 * TOL, f"untransposed {key} went unnoticed: rel err {bad:.3g}"
