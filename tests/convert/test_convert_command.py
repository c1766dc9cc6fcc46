"""`shunted convert` end to end: the bundled real checkpoint, errors users meet, no torch, atomic output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from convert_helpers import sha256

import shunted
from shunted.cli import main
from shunted.convert import convert_file, read_weights, torch_pickle
from shunted.convert.torch_writer import write_checkpoint
from shunted.errors import WeightsError

ASSETS = Path(shunted.__file__).resolve().parent / "assets" / "demo"
DEMO = ASSETS / "ckpt_T_cifar10_fp16.pth"


@pytest.fixture(scope="module")
def demo_state() -> dict[str, np.ndarray]:
    """The bundled checkpoint's official-layout state dict (float16), read with the package's reader."""
    return torch_pickle.load(DEMO)["model"]


def test_bundled_checkpoint_converts(tmp_path):
    expected = json.loads((ASSETS / "expected.json").read_text())
    assert sha256(DEMO) == expected["checkpoint_sha256"]
    dst = tmp_path / "shunted_t_cifar10.pdparams"
    info = convert_file(DEMO, dst)
    assert (info["variant"], info["num_classes"], info["source"]["dtype"]) == ("shunted_t", 10, "float16")
    assert info["dtype"] == "float32" and info["source"]["sha256"] == expected["checkpoint_sha256"]
    assert info["preprocessing"]["num_classes"] == 10 and info["preprocessing"]["interpolation"] == "bicubic"
    assert info["package"]["version"] == shunted.__version__
    assert json.loads((tmp_path / "shunted_t_cifar10.pdparams.json").read_text()) == info

    import paddle

    loaded = paddle.load(str(dst), return_numpy=True)
    state = read_weights(DEMO).state
    assert list(loaded) == list(state) and len(state) == info["num_tensors"]
    assert all(np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in state.items())
    # What paddle.save writes (protocol 4) is read back identically too.
    paddle.save(state, str(tmp_path / "by_paddle.pdparams"))
    again = read_weights(tmp_path / "by_paddle.pdparams").state
    assert all(np.array_equal(again[k], v) and again[k].dtype == v.dtype for k, v in state.items())


def test_bundled_copy_is_the_shared_file(shared_dir):
    assert sha256(DEMO) == sha256(shared_dir / "demo" / "ckpt_T_cifar10_fp16.pth")


def test_bundled_values_equal_torch_load():
    torch = pytest.importorskip("torch")
    from shunted.convert.mapping import torch_to_paddle

    official = torch.load(DEMO, weights_only=True)["model"]
    expected = torch_to_paddle(
        {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in official.items()}
    )
    state = read_weights(DEMO).state
    assert list(state) == list(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)


def test_create_model_with_bundled_checkpoint_and_wrong_variant():
    model = shunted.create_model("shunted_t", pretrained=DEMO)
    assert model.head.weight.shape == [512, 10]
    with pytest.raises(WeightsError, match="shunted_t"):
        shunted.create_model("shunted_s", pretrained=DEMO)


# --- errors -------------------------------------------------------------------------------------------------------


def _modified(tmp_path, demo_state, change) -> Path:
    state = dict(demo_state)
    change(state)
    path = tmp_path / "modified.pth"
    write_checkpoint(path, state)
    return path


def _nan(state):
    w = state["patch_embed2.proj.weight"].copy()
    w.flat[3] = np.nan
    state["patch_embed2.proj.weight"] = w


ERROR_CASES = {
    "empty": (lambda tmp, st: _write(tmp / "empty.pth", b""), [], "empty file"),
    "random bytes": (
        lambda tmp, st: _write(tmp / "random.pth", np.random.default_rng(0).bytes(4096)),
        [],
        "not a PyTorch checkpoint",
    ),
    "truncated zip": (
        lambda tmp, st: _write(tmp / "cut.pth", DEMO.read_bytes()[: DEMO.stat().st_size // 2]),
        [],
        "truncated or corrupt zip",
    ),
    "plain pickle": (
        lambda tmp, st: _write(tmp / "plain.pth", __import__("pickle").dumps({"a": 1}, protocol=2)),
        [],
        "no torch magic number",
    ),
    "other architecture": (
        lambda tmp, st: _resnet_like(tmp / "resnet18.pth"),
        [],
        "not a Shunted Transformer checkpoint",
    ),
    "nonexistent": (lambda tmp, st: tmp / "does_not_exist.pth", [], "no such file"),
    "model contradiction": (lambda tmp, st: DEMO, ["--model", "shunted_s"], "--model shunted_s contradicts"),
    "classes contradiction": (
        lambda tmp, st: DEMO,
        ["--num-classes", "1000"],
        "--num-classes 1000 contradicts",
    ),
    "unknown model": (lambda tmp, st: DEMO, ["--model", "shunted_x"], "unknown model 'shunted_x'"),
    "missing key": (
        lambda tmp, st: _modified(tmp, st, lambda s: s.pop("block1.0.attn.q.weight")),
        [],
        "missing keys (1): block1.0.attn.q.weight",
    ),
    "unexpected key": (
        lambda tmp, st: _modified(
            tmp, st, lambda s: s.update({"block1.0.attn.extra.bias": np.ones(3, np.float16)})
        ),
        [],
        "unexpected keys (1): block1.0.attn.extra.bias",
    ),
    "mis-shaped key": (
        lambda tmp, st: _modified(tmp, st, lambda s: s.update({"norm1.bias": np.ones(65, np.float16)})),
        [],
        "shape mismatches (1): norm1.bias (65,) vs model (64,)",
    ),
    "non-finite": (
        lambda tmp, st: _modified(tmp, st, _nan),
        [],
        "non-finite values in (1): patch_embed2.proj.weight",
    ),
    "missing --key entry": (lambda tmp, st: DEMO, ["--key", "model_ema"], "has no entry 'model_ema'"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _resnet_like(path: Path) -> Path:
    rng = np.random.default_rng(0)
    state = {
        "conv1.weight": rng.standard_normal((64, 3, 7, 7)).astype(np.float32),
        "bn1.weight": np.ones(64, np.float32),
        "bn1.running_mean": np.zeros(64, np.float32),
        "layer1.0.conv1.weight": rng.standard_normal((64, 64, 3, 3)).astype(np.float32),
        "fc.weight": rng.standard_normal((1000, 512)).astype(np.float32),
        "fc.bias": np.zeros(1000, np.float32),
    }
    write_checkpoint(path, state)
    return path


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_one_line_and_leave_files_alone(tmp_path, capsys, demo_state, case):
    make, flags, message = ERROR_CASES[case]
    src = make(tmp_path, demo_state)
    src_hash = sha256(src) if src.exists() else None
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "existing.pdparams"
    dst.write_bytes(b"previous content")
    assert main(["convert", str(src), str(dst), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("shunted convert: error:") and message in err, err
    if flags[:1] != ["--model"] or case == "model contradiction":
        assert str(src) in err, err
    assert dst.read_bytes() == b"previous content"
    assert sorted(p.name for p in out_dir.iterdir()) == ["existing.pdparams"]  # no partial or temporary file
    if src_hash is not None:
        assert sha256(src) == src_hash


def test_fresh_dst_not_created_on_failure(tmp_path, capsys):
    src = _write(tmp_path / "empty.pth", b"")
    assert main(["convert", str(src), str(tmp_path / "new.safetensors")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.pth"]


def test_unsupported_output_extension(tmp_path, capsys):
    assert main(["convert", str(DEMO), str(tmp_path / "model.onnx")]) == 2
    assert "unsupported output extension" in capsys.readouterr().err


# --- without torch ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # a subprocess per command: the marked stage keeps the fast suite within its budget
def test_runs_where_import_torch_fails(tmp_path, no_torch_env):
    """A ``torch`` package on PYTHONPATH whose import raises: the converter never needs it (both directions)."""
    env = no_torch_env
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "torch is not available" in probe.stderr

    pdparams, pth = tmp_path / "t.pdparams", tmp_path / "t.pth"
    for src, dst in [(DEMO, pdparams), (pdparams, pth)]:
        run = subprocess.run(
            [sys.executable, "-m", "shunted", "convert", str(src), str(dst)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert "shunted_t, 10 classes" in run.stdout
    assert read_weights(pth).variant == "shunted_t"


def test_paddle_saved_state_dict_converts_to_official_layout(tmp_path, capsys):
    """A .pdparams written by paddle.save(model.state_dict()) (e.g. after fine-tuning) → official .pth."""
    import paddle

    model = shunted.create_model("shunted_t", num_classes=5)
    src = tmp_path / "finetuned.pdparams"
    paddle.save(model.state_dict(), str(src))
    dst = tmp_path / "finetuned.pth"
    assert main(["convert", str(src), str(dst), "--model", "shunted_t", "--num-classes", "5"]) == 0
    official = torch_pickle.load(dst)["model"]
    assert official["head.weight"].shape == (5, 512)  # Linear back to [out, in]
    np.testing.assert_array_equal(official["head.weight"], model.head.weight.numpy().T)
    np.testing.assert_array_equal(
        official["patch_embed1.conv.1.running_var"], model.patch_embed1.conv[1]._variance.numpy()
    )
    assert official["patch_embed1.conv.1.num_batches_tracked"] == 0
