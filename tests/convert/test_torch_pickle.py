"""The torch-free .pth reader against torch.save's own output: dtypes, views, shared storages, containers."""

from __future__ import annotations

import argparse
import collections
import pickle

import numpy as np
import pytest

from shunted.convert import torch_pickle
from shunted.convert.torch_writer import checkpoint_pickle, write_checkpoint

torch = pytest.importorskip("torch")


def _tensors():
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8) / 7
    return {
        "contiguous": base,
        "transposed": base.t(),  # same storage, other strides
        "slice": base[2:5, 1:7:2],  # storage offset + steps
        "expanded": torch.randn(3, 1).expand(3, 4),  # stride 0
        "bfloat16": torch.randn(5, 3).bfloat16(),
        "float16": torch.randn(4, 2).half(),
        "float64": torch.randn(3, dtype=torch.float64),
        "int64": torch.arange(5),
        "int32": torch.arange(4, dtype=torch.int32),
        "uint8": torch.arange(6, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(7),
        "empty": torch.empty(0, 3),
        "parameter": torch.nn.Parameter(torch.randn(2, 2)),
    }


def _expected(t):
    t = t.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_what_torch_save_writes(tmp_path, legacy):
    tensors = _tensors()
    path = tmp_path / "t.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
    loaded = torch_pickle.load(path)
    assert list(loaded) == list(tensors)
    for key, t in tensors.items():
        expected = _expected(t)
        assert loaded[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(loaded[key], expected, err_msg=key)
        assert loaded[key].flags.c_contiguous


def test_shared_storage_is_read_once_and_not_aliased(tmp_path):
    base = torch.randn(4, 4)
    path = tmp_path / "shared.pth"
    torch.save({"a": base, "b": base.t()}, path)
    with torch_pickle.PthFile(path) as pth:
        refs = pth.root
        assert refs["a"].storage == refs["b"].storage
        arrays = dict(pth.arrays(refs))
    arrays["a"][0, 0] = 123.0  # the two results must not share memory
    np.testing.assert_array_equal(arrays["b"], base.t().numpy())


def test_training_checkpoint_contents_are_inert(tmp_path):
    """optimizer / lr_scheduler / epoch / scaler / Namespace args / numpy scalars all load; nothing is run."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    args = argparse.Namespace(model="shunted_t", lr=5e-4, batch_size=128, output_dir="out", smoothing=0.1)
    ckpt = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "epoch": 7,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
        "args": args,
        "max_accuracy": np.float64(0.75),
        "rng": np.arange(3, dtype=np.uint32),
    }
    path = tmp_path / "train.pth"
    torch.save(ckpt, path)
    loaded = torch_pickle.load(path)
    assert loaded["epoch"] == 7 and loaded["scaler"]["scale"] == 65536.0
    assert isinstance(loaded["args"], torch_pickle.Namespace)
    assert loaded["args"].lr == 5e-4 and loaded["args"].state["model"] == "shunted_t"
    assert float(loaded["max_accuracy"]) == 0.75
    np.testing.assert_array_equal(loaded["rng"], np.arange(3, dtype=np.uint32))
    exp_avg = loaded["optimizer"]["state"][0]["exp_avg"]
    np.testing.assert_array_equal(exp_avg, opt.state_dict()["state"][0]["exp_avg"].numpy())
    assert loaded["lr_scheduler"]["T_max"] == 10


def test_reader_does_not_over_read_legacy_stream(tmp_path):
    """Legacy files put the raw storages right after the pickles: the unpickler must stop exactly at STOP."""
    path = tmp_path / "legacy.pth"
    values = {f"w{i}": torch.randn(i + 1, 3) for i in range(5)}
    torch.save(values, path, _use_new_zipfile_serialization=False)
    loaded = torch_pickle.load(path)
    for key, t in values.items():
        np.testing.assert_array_equal(loaded[key], t.numpy())


def test_writer_output_is_accepted_by_torch_weights_only(tmp_path):
    state = collections.OrderedDict(
        w=np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32),
        h=np.arange(4, dtype=np.float16),
        n=np.zeros((), dtype=np.int64),
        b=np.array([True, False]),
    )
    path = tmp_path / "ours.pth"
    write_checkpoint(path, state)
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == ["model"] and list(loaded["model"]) == list(state)
    for key, value in state.items():
        t = loaded["model"][key]
        assert t.is_contiguous() and str(t.dtype) == f"torch.{value.dtype.name}"
        np.testing.assert_array_equal(t.numpy(), value)
    # and our own reader returns the same arrays
    again = torch_pickle.load(path)["model"]
    assert all(np.array_equal(again[k], v) and again[k].dtype == v.dtype for k, v in state.items())


def test_writer_pickle_uses_only_weights_only_globals():
    data = checkpoint_pickle({"w": np.zeros((2, 2), np.float32)})
    names = set()
    for op, arg, _ in __import__("pickletools").genops(data):
        if op.name == "GLOBAL":
            names.add(arg)
    assert names == {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage"}
    assert data[:2] == pickle.PROTO + b"\x02"  # protocol 2, like torch.save


def test_zip_entries_are_stored_and_64_byte_aligned(tmp_path):
    import struct
    import zipfile

    path = tmp_path / "aligned.pth"
    write_checkpoint(path, {"a": np.ones(3, np.float32), "b": np.ones((7, 5), np.float16)})
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename
        assert zf.testzip() is None
