"""What convert guarantees besides the bounds of test_memory_bounds.py (issue 11, items 2 and 6).

* keys, shapes and dtypes are checked before any tensor data is read (``.pth``: the pickle comes first);
* an interrupted convert never leaves DST replaced without its sidecar DST.json;
* safetensors are read and written by the ``safetensors`` package (bfloat16 included).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import shunted
from shunted.convert import convert_file, read_weights, safetensors_io, torch_pickle
from shunted.convert.torch_writer import write_checkpoint
from shunted.errors import CheckpointFormatError, WeightsError

DEMO = Path(shunted.__file__).resolve().parent / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"


@pytest.fixture(scope="module")
def demo_state() -> dict[str, np.ndarray]:
    return torch_pickle.load(DEMO)["model"]


def _count_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    original = torch_pickle.PthFile.array

    def counting(self, ref, *args, **kwargs):
        reads.append(ref.storage.key)
        return original(self, ref, *args, **kwargs)

    monkeypatch.setattr(torch_pickle.PthFile, "array", counting)
    return reads


@pytest.mark.parametrize(
    "change",
    ["missing key", "wrong shape", "integer dtype", "not shunted"],
)
def test_keys_shapes_dtypes_checked_before_any_data_is_read(tmp_path, monkeypatch, demo_state, change):
    state = dict(demo_state)
    if change == "missing key":
        del state["block1.0.attn.q.weight"]
    elif change == "wrong shape":
        state["head.bias"] = np.zeros(11, np.float16)
        state["head.weight"] = np.zeros((12, state["head.weight"].shape[1]), np.float16)
    elif change == "integer dtype":
        state["norm1.weight"] = state["norm1.weight"].astype(np.int32)
    else:
        state = {f"layer{i}.weight": v for i, v in enumerate(state.values())}
    path = tmp_path / "bad.pth"
    write_checkpoint(path, state)
    reads = _count_reads(monkeypatch)
    with pytest.raises(WeightsError):
        read_weights(path)
    assert reads == [], f"{len(reads)} tensors were read before the check failed"


def test_each_kept_tensor_is_read_once(tmp_path, monkeypatch, demo_state):
    """Only the tensors that are kept are read (never ``num_batches_tracked``), each once."""
    path = tmp_path / "train.pth"
    write_checkpoint(path, demo_state)
    reads = _count_reads(monkeypatch)
    weights = read_weights(path)
    n_model = sum(1 for k in demo_state if not k.endswith("num_batches_tracked"))
    assert len(reads) == n_model == len(weights.state)


def test_interrupted_convert_never_replaces_dst_without_its_sidecar(tmp_path, monkeypatch):
    dst = tmp_path / "w.safetensors"
    side = tmp_path / "w.safetensors.json"
    dst.write_bytes(b"OLD")
    side.write_text('{"old": true}')
    real_replace = os.replace

    def interrupted(src, target, *args, **kwargs):  # killed just before the sidecar lands
        if Path(target) == side:
            raise KeyboardInterrupt
        return real_replace(src, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_file(DEMO, dst)
    monkeypatch.setattr(os, "replace", real_replace)
    assert dst.read_bytes() == b"OLD" and json.loads(side.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "w.safetensors",
        "w.safetensors.json",
    ]  # no temporaries

    # Interrupted just before DST lands: the new sidecar is in place and says which DST it describes.
    def interrupted_dst(src, target, *args, **kwargs):
        if Path(target) == dst:
            raise KeyboardInterrupt
        return real_replace(src, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", interrupted_dst)
    with pytest.raises(KeyboardInterrupt):
        convert_file(DEMO, dst)
    monkeypatch.setattr(os, "replace", real_replace)
    assert dst.read_bytes() == b"OLD"
    info = json.loads(side.read_text())
    assert info["output"]["size"] != 3  # it describes a DST that is not there: detectable

    info = convert_file(DEMO, dst)
    from shunted.fileio import sha256_file

    assert info["output"]["sha256"] == sha256_file(dst) and info["output"]["size"] == dst.stat().st_size
    assert json.loads(side.read_text()) == info


def test_sidecar_that_is_a_folder_is_refused_before_work(tmp_path):
    dst = tmp_path / "w.pdparams"
    (tmp_path / "w.pdparams.json").mkdir()
    with pytest.raises(IsADirectoryError, match="w.pdparams.json"):
        convert_file(DEMO, dst)
    assert not dst.exists()


def test_safetensors_written_and_read_by_the_package(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(3, dtype=">i8")}
    path = tmp_path / "x.safetensors"
    safetensors_io.write(path, state, {"k": "v"})
    loaded = load_file(path)
    np.testing.assert_array_equal(loaded["a"], state["a"])
    np.testing.assert_array_equal(loaded["b"], state["b"].astype(np.int64))
    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"k": "v"}
    again, metadata = safetensors_io.read(path)
    assert metadata == {"k": "v"} and again["b"].dtype == np.int64


def test_safetensors_bfloat16_is_widened_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    values = torch.randn(5, 3).to(torch.bfloat16)
    path = tmp_path / "bf.safetensors"
    save_file({"w": values}, str(path))
    read, _ = safetensors_io.read(path)
    assert read["w"].dtype == np.float32
    np.testing.assert_array_equal(read["w"], values.float().numpy())


def test_safetensors_header_longer_than_the_file_is_one_line(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes((1000).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointFormatError, match="header length 1000 for a 10-byte file"):
        read_weights(path)
