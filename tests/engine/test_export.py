"""Exports (Paddle Inference and ONNX) reproduce dygraph on real images, with a dynamic batch, atomically."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from exporters import needs_onnx_exporter

from shunted.engine.export import (
    META_FILE,
    ExportError,
    ParityCheck,
    dygraph_outputs,
    export_model,
    load_batch,
    paddle_files,
)
from shunted.factory import create_model
from shunted.runtime import make_predictor

needs_onnx_exporter(module=True)
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def images(shared_dir):
    files = sorted((shared_dir / "data" / "imagenet-samples").glob("*.JPEG"))[:3]
    assert len(files) == 3
    return files


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
@pytest.mark.parametrize(
    ("fmt", "img_size"), [("paddle", 224), ("onnx", 224), ("paddle", 160), ("onnx", 160)]
)
def test_export_matches_dygraph_at_batch_1_and_3(fmt, img_size, model_t, images, tmp_path, relative_error):
    out = tmp_path / f"{fmt}-{img_size}"
    info = export_model(model_t, fmt, out, img_size, model_name="shunted_t", check=ParityCheck(images))
    assert info.parity["max_rel_err"] <= 1e-5
    meta = json.loads((out / META_FILE).read_text())
    assert meta["format"] == fmt and meta["img_size"] == img_size and meta["outputs"] == ["logits"]
    if fmt == "paddle":
        assert all(p.is_file() for p in paddle_files(out))
    else:
        assert (out / "model.onnx").is_file()
    # Independently of the export's own check: reload the written files and compare batches of 1 and 3.
    predict = make_predictor("inference" if fmt == "paddle" else "onnxruntime", out, threads=2)
    batch = load_batch(images, model_t, img_size)
    for n in (1, 3):
        (expected,) = dygraph_outputs(model_t, batch[:n])
        got = predict(batch[:n])
        assert got.shape == (n, 1000)
        assert relative_error(got, expected) <= 1e-5


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_features_export_returns_the_four_stage_maps(images, tmp_path, relative_error):
    model = create_model("shunted_t", features_only=True)
    out = tmp_path / "features"
    info = export_model(model, "onnx", out, 160, model_name="shunted_t", check=ParityCheck(images))
    assert info.features and info.outputs == ["stage1", "stage2", "stage3", "stage4"]
    batch = load_batch(images, model, 160)[:2]
    got = make_predictor("onnxruntime", out, threads=2)(batch)
    expected = dygraph_outputs(model, batch)
    assert [g.shape for g in got] == [(2, 64, 40, 40), (2, 128, 20, 20), (2, 256, 10, 10), (2, 512, 5, 5)]
    for g, e in zip(got, expected, strict=True):
        assert relative_error(g, e) <= 1e-5


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_failed_check_writes_nothing_and_keeps_the_old_export(model_t, images, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    previous = {"model": "shunted_t", "format": "onnx", "files": ["export.json", "model.onnx"]}
    (out / META_FILE).write_text(json.dumps(previous))
    (out / "model.onnx").write_text("previous export")
    # float32 runtimes never match dygraph to 1e-12: the check must refuse, naming the error.
    with pytest.raises(ExportError, match=r"rel err .* > 1e-12"):
        export_model(model_t, "paddle", out, 96, model_name="shunted_t", check=ParityCheck(images, tol=1e-12))
    assert sorted(p.name for p in out.iterdir()) == [META_FILE, "model.onnx"]
    assert (out / "model.onnx").read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary directory left behind


def test_rejects_sizes_that_are_not_multiples_of_32(model_t, images, tmp_path):
    with pytest.raises(ExportError, match="--img-size 100"):
        export_model(
            model_t, "paddle", tmp_path / "x", 100, model_name="shunted_t", check=ParityCheck(images)
        )
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_export_command_with_the_demo_checkpoint(shared_dir, tmp_path, capsys):
    import shunted.convert

    if not hasattr(shunted.convert, "read_weights"):
        pytest.skip("shunted.convert.read_weights is not available yet")
    from shunted.commands import export as command

    weights = shared_dir / "demo" / "ckpt_T_cifar10_fp16.pth"
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "demo-onnx"
    args = parser.parse_args(
        ["--model", "shunted_t", "--weights", str(weights), "--format", "onnx", "--output", str(out)]
        + ["--img-size", "64", "--check-images", str(shared_dir / "data" / "cifar10" / "test" / "cat")]
    )
    assert command.run(args) == 0
    assert "max rel err" in capsys.readouterr().out
    meta = json.loads((out / META_FILE).read_text())
    assert meta["num_classes"] == 10 and meta["weights"] == str(weights)
    model = create_model("shunted_t", pretrained=weights)
    x = load_batch(sorted((shared_dir / "data" / "cifar10" / "test" / "cat").glob("*"))[:4], model, 64)
    (expected,) = dygraph_outputs(model, x)
    got = make_predictor("onnxruntime", out, threads=2)(x)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_export_leaves_the_model_a_dygraph_model(tmp_path):
    """paddle.jit.to_static swaps model.forward in place; the export puts the eager forward back."""
    from paddle.jit.dy2static.program_translator import StaticFunction

    from shunted.engine.export import save_paddle

    model = create_model("shunted_t", num_classes=10)
    save_paddle(model, tmp_path, 64)
    assert "forward" not in vars(model)
    assert not isinstance(model.forward, StaticFunction)


RUNTIME_FILES = [
    "runtime",
    "engine/export.py",
    "engine/evaluate.py",
    "engine/predict.py",
    "engine/bench.py",
    "engine/session.py",
    *(f"commands/{c}.py" for c in ("eval", "predict", "bench", "export", "common", "demo")),
]


def test_nothing_outside_the_package_at_run_time(repo_root):
    """Check images come from the package (or --check-images); no runtime path reads ../shared or tests/."""
    from shunted.engine.export import find_check_images

    package = repo_root / "shunted"
    images = find_check_images(3)
    demo = (package / "assets" / "cifar10-demo").resolve()
    assert len(images) == 3 and all(p.resolve().is_relative_to(demo) for p in images)
    paths = [package / name for name in RUNTIME_FILES]
    files = [f for p in paths for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p])]
    for path in files:
        text = path.read_text()
        for needle in ("SPEC.md", "../shared", '"shared"', "tests/", '"tests"'):
            assert needle not in text, f"{path.relative_to(repo_root)} mentions {needle}"
