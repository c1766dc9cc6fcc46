"""The start-up shortcut (shunted/engine/session.py): a warm start opens the cached export of a weights file without
building the model or importing Paddle, and never opens the wrong one.

ONNX Runtime stands for every static runtime here (the shortcut does not depend on the runtime; OpenVINO's own
checks run in a process of their own, tests/engine/openvino_cases.py). Mutations: a shortcut key without the
weights file's SHA-256 opens the old export for new weights (``test_new_weights_at_the_same_path``); a shortcut
that trusts a missing export crashes ``test_a_bad_shortcut_or_a_missing_export``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from exporters import needs_onnx_exporter

from shunted.engine.session import SHORTCUT_FILE, RuntimeConfig, open_model
from shunted.errors import WeightsError
from shunted.runtime.cache import ENTRY_FILE

pytest.importorskip("onnxruntime")
needs_onnx_exporter(module=True)

RUNTIME = RuntimeConfig("onnxruntime", threads=2, img_size=64)


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "shunted" / "exports"


def _entries(exports: Path, kind: str) -> list[Path]:
    return [d for d in exports.iterdir() if json.loads((d / ENTRY_FILE).read_text())["key"]["kind"] == kind]


def test_a_warm_start_opens_the_export_without_building_the_model(cache_home, demo_checkpoint, cifar_batch):
    cold = open_model("shunted_t", demo_checkpoint, RUNTIME)
    assert cold.model is not None and cold.cached is False
    assert len(_entries(cache_home, "opened")) == 1 and len(_entries(cache_home, "export")) == 1
    warm = open_model("shunted_t", demo_checkpoint, RUNTIME)
    assert warm.model is None and warm.cached is True  # nothing built
    for field in ("model_name", "num_classes", "pretrained_cfg", "weights_sha256", "backend", "img_size"):
        assert getattr(warm, field) == getattr(cold, field), field
    np.testing.assert_array_equal(warm.predictor(cifar_batch), cold.predictor(cifar_batch))


def test_a_warm_eval_never_imports_paddle(cache_home, repo_root, tmp_path):
    """The second ``shunted eval`` runs in a process where ``import paddle`` fails: the shortcut, the runtime, the
    inference loop (threads, not Paddle's DataLoader) and the result (Paddle's version from its metadata) do
    without it, and count what the first run counted."""
    data = repo_root / "shunted" / "assets" / "cifar10-demo"
    argv = [
        "eval",
        "--model",
        "shunted_t",
        "--weights",
        str(repo_root / "shunted/assets/demo/ckpt_T_cifar10_fp16.pth"),
    ]
    argv += [
        "--data",
        str(data),
        "--img-size",
        "64",
        "--resize-short",
        "73",
        "--num-classes",
        "10",
        "--limit",
        "40",
    ]
    argv += ["--backend", "onnxruntime", "--workers", "2", "--no-progress"]
    env = {**__import__("os").environ, "PYTHONPATH": str(repo_root)}
    results = []
    for name, prelude in (("cold", ""), ("warm", "sys.modules['paddle'] = None; ")):
        out = tmp_path / f"{name}.json"
        code = f"import sys; {prelude}from shunted.cli import main; sys.exit(main({[*argv, '--output', str(out)]!r}))"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(out.read_text()))
    cold, warm = results
    assert warm["top1"] == cold["top1"] and warm["top5"] == cold["top5"] and warm["n"] == 40
    assert warm["versions"]["paddle"] == cold["versions"]["paddle"] is not None


def test_new_weights_at_the_same_path_never_take_the_old_shortcut(
    cache_home, tmp_path, demo_checkpoint, cifar_batch
):
    import paddle

    from shunted.factory import create_model

    model = create_model("shunted_t", pretrained=demo_checkpoint)
    path = tmp_path / "w.pdparams"
    paddle.save(model.state_dict(), str(path))
    first = open_model("shunted_t", path, RUNTIME).predictor(cifar_batch)
    state = model.state_dict()
    state["head.bias"].set_value(state["head.bias"] + 1.0 * paddle.arange(10, dtype="float32"))
    paddle.save(state, str(path))
    changed = open_model("shunted_t", path, RUNTIME)
    assert changed.model is not None  # built: the file's SHA-256 differs
    assert np.abs(changed.predictor(cifar_batch) - first).max() > 0.5


def test_a_bad_shortcut_or_a_missing_export_falls_back_to_building(cache_home, demo_checkpoint, cifar_batch):
    expected = open_model("shunted_t", demo_checkpoint, RUNTIME).predictor(cifar_batch)
    (shortcut,) = _entries(cache_home, "opened")
    (shortcut / SHORTCUT_FILE).write_text('{"export_key": "elsewhere"}')  # no longer what entry.json recorded
    again = open_model("shunted_t", demo_checkpoint, RUNTIME)
    assert again.model is not None
    np.testing.assert_array_equal(again.predictor(cifar_batch), expected)
    assert open_model("shunted_t", demo_checkpoint, RUNTIME).model is None  # the shortcut was rebuilt
    for export in _entries(cache_home, "export"):
        (export / "model.onnx").unlink()
    rebuilt = open_model("shunted_t", demo_checkpoint, RUNTIME)
    assert rebuilt.model is not None
    np.testing.assert_array_equal(rebuilt.predictor(cifar_batch), expected)


def test_the_class_count_is_checked_on_a_warm_start_too(cache_home, demo_checkpoint):
    open_model("shunted_t", demo_checkpoint, RUNTIME)
    with pytest.raises(WeightsError, match=r"has 10 classes, but --num-classes is 7$"):
        open_model("shunted_t", demo_checkpoint, RUNTIME, expect_num_classes=7)


def test_no_shortcut_without_the_cache_or_for_a_fresh_head(cache_home, demo_checkpoint):
    open_model(
        "shunted_t", demo_checkpoint, RuntimeConfig("onnxruntime", threads=2, img_size=64, cache=False)
    )
    assert not cache_home.exists() or not _entries(cache_home, "opened")
    fresh = open_model(
        "shunted_t", demo_checkpoint, RUNTIME, num_classes=7
    )  # a new head: random, never cached
    assert fresh.model is not None and not _entries(cache_home, "opened")


def test_weights_replaced_while_the_model_is_built_leave_no_shortcut(
    cache_home, tmp_path, demo_checkpoint, monkeypatch
):
    """The key's hash is taken before the model reads the file: when the file changes in between (a trainer
    writing it), no shortcut is recorded, since it would send the old file's hash to the new weights' export.
    Mutation: saving without comparing the hash the model read records one."""
    import paddle

    from shunted.engine import session
    from shunted.factory import create_model

    model = create_model("shunted_t", pretrained=demo_checkpoint)
    path = tmp_path / "w.pdparams"
    paddle.save(model.state_dict(), str(path))
    state = model.state_dict()
    state["head.bias"].set_value(state["head.bias"] + 1.0)
    original = session._shortcut_for

    def then_replaced(*args, **kwargs):
        found = original(*args, **kwargs)
        paddle.save(state, str(path))
        return found

    monkeypatch.setattr(session, "_shortcut_for", then_replaced)
    assert open_model("shunted_t", path, RUNTIME).model is not None
    assert not _entries(cache_home, "opened")


def test_the_same_bytes_under_another_suffix_are_read_as_that_suffix(cache_home, tmp_path, demo_checkpoint):
    """The suffix picks the reader, so it is part of the key: a .pdparams renamed .safetensors is refused as the
    cold path refuses it, never opened through the .pdparams shortcut."""
    import paddle

    from shunted.factory import create_model

    path = tmp_path / "w.pdparams"
    paddle.save(create_model("shunted_t", pretrained=demo_checkpoint).state_dict(), str(path))
    open_model("shunted_t", path, RUNTIME)
    renamed = tmp_path / "w.safetensors"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(Exception, match="w.safetensors"):
        open_model("shunted_t", renamed, RUNTIME)


def test_a_runtime_that_fails_on_the_warm_path_leaves_the_choice_to_the_cold_one(
    cache_home, demo_checkpoint, monkeypatch
):
    from shunted.engine import session

    open_model("shunted_t", demo_checkpoint, RUNTIME)
    calls = []
    original = session.make_predictor

    def fails_once(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise RuntimeError("this CPU cannot run the cached model")
        return original(*args, **kwargs)

    monkeypatch.setattr(session, "make_predictor", fails_once)
    again = open_model("shunted_t", demo_checkpoint, RUNTIME)
    assert again.model is not None and len(calls) == 2
