"""The other direction and the other formats: .pdparams → official .pth → .pdparams, .safetensors, training
checkpoints, and ``create_model(pretrained=…)`` with each file type."""

from __future__ import annotations

import argparse

import numpy as np
import paddle
import pytest
from convert_helpers import sha256

import shunted
from shunted.cli import main
from shunted.convert import convert_file, read_weights, safetensors_io

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def reference_t(reference):
    model = reference.randomize_(reference.build("shunted_t", num_classes=7), seed=11)
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    return model, x, logits


@pytest.fixture()
def official_pth(tmp_path, reference_t):
    path = tmp_path / "ckpt_T.pth"
    torch.save({"model": reference_t[0].state_dict()}, path)
    return path


def _paddle_logits(path, x, name="shunted_t"):
    model = shunted.create_model(name, pretrained=path)
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_pdparams_to_pth_to_pdparams_is_bit_exact(tmp_path, reference, reference_t, official_pth, capsys):
    model, x, logits = reference_t
    first, back, second = tmp_path / "a.pdparams", tmp_path / "b.pth", tmp_path / "c.pdparams"
    assert main(["convert", str(official_pth), str(first)]) == 0
    assert main(["convert", str(first), str(back)]) == 0
    assert main(["convert", str(back), str(second)]) == 0
    assert "shunted_t, 7 classes" in capsys.readouterr().out
    assert sha256(first) == sha256(second)
    a, c = read_weights(first).state, read_weights(second).state
    assert list(a) == list(c) and all(np.array_equal(a[k], c[k]) and a[k].dtype == c[k].dtype for k in a)

    # torch's restricted loader accepts the written file; the reference loads it strictly, same logits
    loaded = torch.load(back, weights_only=True)
    assert list(loaded) == ["model"]
    state = loaded["model"]
    assert list(state) == list(model.state_dict())
    assert int(state["patch_embed1.conv.1.num_batches_tracked"]) == 0
    fresh = reference.build("shunted_t", num_classes=7)
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        np.testing.assert_array_equal(fresh(torch.from_numpy(x)).numpy(), logits)
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(state[key], value), key


def test_safetensors_both_ways(tmp_path, reference_t, official_pth, relative_error):
    model, x, logits = reference_t
    st, pdparams = tmp_path / "t.safetensors", tmp_path / "t.pdparams"
    info = convert_file(official_pth, st)
    assert info["output"]["format"] == "safetensors"
    convert_file(official_pth, pdparams)
    expected = read_weights(pdparams).state
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    theirs = safetensors_numpy.load_file(str(st))  # the reference implementation reads our file
    assert set(theirs) == set(expected) and all(np.array_equal(theirs[k], v) for k, v in expected.items())
    # create_model accepts all three files and gives the reference's logits
    for path in (official_pth, pdparams, st):
        # the 2e-6 parity bound is test_convert_parity's job; here: every file type loads and runs
        assert relative_error(_paddle_logits(path, x), logits) <= 1e-5, path
    for path in (official_pth, st):
        state = read_weights(path).state
        assert all(np.array_equal(state[k], v) for k, v in expected.items()), path
    # a safetensors file in the official (torch) layout is recognised by its BatchNorm names
    official = tmp_path / "official_layout.safetensors"
    safetensors_io.write(official, {k: v.numpy() for k, v in model.state_dict().items()})
    again = read_weights(official).state
    assert all(np.array_equal(again[k], v) for k, v in expected.items())


def test_bfloat16_checkpoint_is_widened_exactly(tmp_path, reference_t):
    model = reference_t[0]
    path = tmp_path / "bf16.pth"
    torch.save({k: v.bfloat16() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    weights = read_weights(path, keep_dtype=True)  # bfloat16 has no numpy dtype: always float32
    assert weights.dtype == "bfloat16"
    head = weights.state["head.weight"]
    assert head.dtype == np.float32
    np.testing.assert_array_equal(head, model.state_dict()["head.weight"].bfloat16().float().numpy().T)


def test_training_checkpoint_converts_model_and_model_ema(tmp_path, reference, reference_t, capsys):
    model, x, _ = reference_t
    ema = reference.randomize_(reference.build("shunted_t", num_classes=7), seed=12)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=300)
    ckpt = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "epoch": 299,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
        "model_ema": {f"module.{k}": v for k, v in ema.state_dict().items()},
        "args": argparse.Namespace(model="shunted_t", lr=5e-4, drop_path=0.1, output_dir="out", epochs=300),
        "max_accuracy": np.float64(81.2),
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    for key, source in [(None, model), ("model_ema", ema)]:
        dst = tmp_path / f"{key}.pdparams"
        assert main(["convert", str(path), str(dst)] + (["--key", key] if key else [])) == 0
        got = read_weights(dst).state
        np.testing.assert_array_equal(got["head.weight"], source.state_dict()["head.weight"].numpy().T)
        np.testing.assert_array_equal(
            got["block3.3.attn.q.weight"], source.state_dict()["block3.3.attn.q.weight"].numpy().T
        )
    assert main(["convert", str(path), str(tmp_path / "x.pdparams"), "--key", "optimizer"]) == 2
    assert "not a state dict" in capsys.readouterr().err
