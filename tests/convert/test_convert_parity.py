"""Through the converter, the Paddle model reproduces the PyTorch reference's logits (rel err ≤ 2e-6).

Checkpoints are written by ``torch.save`` from the independent reference (shunted/runtime/torch_reference.py) in
every layout users meet: float32 / float16, ``{'model': …}`` / bare, with / without ``module.``, zip / legacy.
shunted_t runs every combination (at 64×64); shunted_s and shunted_b one each (at 224×224).
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import paddle
import pytest

import shunted
from shunted.convert import read_weights

torch = pytest.importorskip("torch")

TOL = 2e-6


def save_torch_checkpoint(path, model, fp16: bool, wrapped: bool, prefixed: bool, legacy: bool):
    state = model.state_dict()
    if fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    if prefixed:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"model": state} if wrapped else state, path, _use_new_zipfile_serialization=not legacy)
    return path


def torch_logits(reference_model, fp16: bool, x: np.ndarray) -> np.ndarray:
    """Logits of the reference with the weights the checkpoint holds (float16-rounded if fp16)."""
    model = reference_model
    if fp16:
        model = copy.deepcopy(reference_model)
        with torch.no_grad():
            for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
                t.copy_(t.half().float())
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def paddle_logits(name: str, path, x: np.ndarray) -> np.ndarray:
    model = shunted.create_model(name, pretrained=path)
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


@pytest.fixture(scope="module")
def tiny(reference):
    model = reference.randomize_(reference.build("shunted_t", num_classes=1000), seed=3)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    return model, x, {fp16: torch_logits(model, fp16, x) for fp16 in (False, True)}


T_CASES = list(itertools.product([False, True], [True, False], [False, True], [False, True]))


@pytest.mark.parametrize(
    "fp16,wrapped,prefixed,legacy",
    T_CASES,
    ids=[
        f"{'fp16' if a else 'fp32'}-{'model' if b else 'bare'}-{'module' if c else 'plain'}-"
        f"{'legacy' if d else 'zip'}"
        for a, b, c, d in T_CASES
    ],
)
def test_shunted_t_every_layout(tmp_path, tiny, relative_error, fp16, wrapped, prefixed, legacy):
    model, x, expected = tiny
    path = save_torch_checkpoint(tmp_path / "ckpt_T.pth", model, fp16, wrapped, prefixed, legacy)
    weights = read_weights(path)
    assert (weights.variant, weights.num_classes) == ("shunted_t", 1000)
    assert weights.dtype == ("float16" if fp16 else "float32")
    assert weights.format == ("pth-legacy" if legacy else "pth-zip")
    assert weights.key == ("model" if wrapped else None)
    assert all(v.dtype in (np.float32, np.int64) for v in weights.state.values())
    err = relative_error(paddle_logits("shunted_t", path, x), expected[fp16])
    assert err <= TOL, err


@pytest.mark.parametrize(
    "name,fp16,wrapped,prefixed,legacy",
    [
        ("shunted_s", True, False, True, True),
        pytest.param("shunted_b", False, True, False, False, marks=pytest.mark.slow),  # fast-suite budget
    ],
)
def test_larger_variants(tmp_path, reference, relative_error, name, fp16, wrapped, prefixed, legacy):
    model = reference.randomize_(reference.build(name, num_classes=1000), seed=5)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    expected = torch_logits(model, fp16, x)
    path = save_torch_checkpoint(tmp_path / f"{name}.pth", model, fp16, wrapped, prefixed, legacy)
    err = relative_error(paddle_logits(name, path, x), expected)
    assert err <= TOL, err


def test_keep_dtype_keeps_float16(tmp_path, tiny):
    model, _, _ = tiny
    path = save_torch_checkpoint(tmp_path / "half.pth", model, True, True, False, False)
    kept = read_weights(path, keep_dtype=True)
    assert kept.state["head.weight"].dtype == np.float16
    expected = model.state_dict()["head.weight"].half().numpy().T
    np.testing.assert_array_equal(kept.state["head.weight"], expected)
