"""``shunted eval`` on real data: logits vs the PyTorch reference, both layouts, bad files, configs, the seam."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from shunted.cli import main
from shunted.engine.evaluate import EvalConfig, EvalRun, evaluate_checkpoint, run_evaluation, topk_correct

REPO = Path(__file__).resolve().parents[2]
SUBSET = REPO / "shunted" / "assets" / "cifar10-demo"
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
CIFAR_ARGS = ["--model", "shunted_t", "--weights", str(CKPT), "--img-size", "64", "--resize-short", "73"]
CIFAR_ARGS += ["--backend", "dygraph"]  # not about runtimes (--backend auto would export the model)


def load_tool():
    """tools/compute_demo_reference.py: the torch reference with its own PIL/torch preprocessing."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "compute_demo_reference", REPO / "tools" / "compute_demo_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def label_list(tmp_path_factory) -> Path:
    """Layout (b): 20 images per class of the bundled subset, listed class-interleaved (not sorted)."""
    classes = sorted(p.name for p in SUBSET.iterdir() if p.is_dir())
    lines = [f"{c}/{i:04d}.jpg {k}" for i in range(20) for k, c in enumerate(classes)]
    path = tmp_path_factory.mktemp("lists") / "val_list.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_logits_match_the_pytorch_reference(tmp_path, label_list):
    tool = load_tool()
    out, logits_path = tmp_path / "r.json", tmp_path / "logits.npy"
    argv = ["eval", *CIFAR_ARGS, "--data", str(SUBSET), "--labels", str(label_list), "--batch-size", "50"]
    assert main([*argv, "--output", str(out), "--save-logits", str(logits_path), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    ours = np.load(logits_path)

    rels, labels = zip(*(line.split() for line in label_list.read_text().splitlines()), strict=True)
    labels = np.array(labels, dtype=np.int64)
    model = tool.load_reference(CKPT, 10)
    import torch

    with torch.no_grad():
        ref = model(torch.stack([tool.preprocess(SUBSET / r) for r in rels])).numpy()
    assert ours.shape == ref.shape == (200, 10)
    assert np.abs(ours - ref).max() <= 1e-4
    ref_top1 = int((ref.argmax(1) == labels).sum())
    assert result["top1"]["correct"] == ref_top1 == int((ours.argmax(1) == labels).sum())
    assert result["n"] == 200 and result["num_classes"] == 10
    assert result["data"]["layout"] == "label-file"
    assert result["weights"]["sha256"] == hashlib.sha256(CKPT.read_bytes()).hexdigest()
    assert result["preprocessing"]["resize_short"] == 73 and result["preprocessing"]["img_size"] == 64
    assert set(result["versions"]) >= {"pillow", "paddle", "numpy"}
    assert result["throughput_img_s"] > 0 and result["timing"]["model_img_s"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logits.npy", "r.json"]  # no temporary files left


def test_class_folders_limit_and_workers(tmp_path):
    """Layout (a) in sorted order; 0 or 2 loader workers give the same logits; --limit takes the first N."""
    kwargs = dict(img_size=64, resize_short=73, limit=30, batch_size=16, progress=False)
    a = evaluate_checkpoint(
        EvalConfig("shunted_t", CKPT, SUBSET, workers=0, save_logits_to=tmp_path / "a.npy", **kwargs)
    )
    b = evaluate_checkpoint(
        EvalConfig("shunted_t", CKPT, SUBSET, workers=2, save_logits_to=tmp_path / "b.npy", **kwargs)
    )
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert a["n"] == b["n"] == 30 and a["top1"] == b["top1"]
    assert a["data"]["layout"] == "folders" and a["data"]["samples"] == 30
    # the first 30 in sorted order are airplane/0000..0029: label 0
    logits = np.load(tmp_path / "a.npy")
    assert a["top1"]["correct"] == int((logits.argmax(1) == 0).sum())


def _bad_tree(root: Path) -> Path:
    for name in ("0000.jpg", "0001.jpg"):
        (root / "airplane").mkdir(parents=True, exist_ok=True)
        (root / "airplane" / name).write_bytes((SUBSET / "airplane" / name).read_bytes())
    data = (SUBSET / "bird" / "0000.jpg").read_bytes()
    (root / "bird").mkdir()
    (root / "bird" / "0000.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (root / "bird" / "0001.jpg").write_text("not an image at all")
    (root / "bird" / "0002.jpg").write_bytes(data)
    return root


def test_bad_images_stop_the_run_or_are_listed_with_skip_bad(tmp_path, capsys):
    data = _bad_tree(tmp_path / "data")
    argv = ["eval", *CIFAR_ARGS, "--data", str(data), "--num-classes", "10", "--no-progress"]
    out = tmp_path / "r.json"
    assert main([*argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bird/0000.jpg" in err and "--skip-bad" in err and "Traceback" not in err
    assert not out.exists()

    logits = tmp_path / "l.npy"
    assert main([*argv, "--skip-bad", "--output", str(out), "--save-logits", str(logits)]) == 0
    result = json.loads(out.read_text())
    assert [s["path"] for s in result["skipped"]] == ["bird/0000.jpg", "bird/0001.jpg"]
    assert all("cannot read image" in s["error"] for s in result["skipped"])
    assert result["n"] == 3 and result["data"]["samples"] == 5
    rows = np.load(logits)
    assert rows.shape == (5, 10) and np.isnan(rows[2:4]).all() and np.isfinite(rows[[0, 1, 4]]).all()
    assert "skipped bird/0001.jpg" in capsys.readouterr().out


def test_num_classes_must_match_the_checkpoint(capsys):
    assert main(["eval", *CIFAR_ARGS, "--data", str(SUBSET), "--num-classes", "1000", "--limit", "1"]) == 2
    assert "has 10 classes, but --num-classes is 1000" in capsys.readouterr().err


def test_paddleclas_config_with_overrides(tmp_path):
    out = tmp_path / "r.json"
    argv = [
        "eval",
        "--backend=dygraph",
        "-c",
        str(REPO / "configs" / "shunted_t.yaml"),
        "-o",
        f"Global.pretrained_model={CKPT}",
        "-o",
        "Arch.class_num=10",
        "-o",
        f"DataLoader.Eval.dataset.image_root={SUBSET}",
        "-o",
        "DataLoader.Eval.dataset.cls_label_path=null",
        "-o",
        "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=73",
        "-o",
        "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=64",
        "--batch-size",  # a flag wins over the config's sampler.batch_size
        "10",
        "--limit",
        "20",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "shunted_t" and result["batch_size"] == 10 and result["workers"] == 2
    assert (result["preprocessing"]["img_size"], result["preprocessing"]["resize_short"]) == (64, 73)
    direct = evaluate_checkpoint(
        EvalConfig("shunted_t", CKPT, SUBSET, img_size=64, resize_short=73, limit=20, progress=False)
    )
    assert result["top1"] == direct["top1"]


def test_config_mean_must_be_the_registry_s(capsys):
    argv = [
        "eval",
        "--backend=dygraph",
        "-c",
        str(REPO / "configs" / "shunted_t.yaml"),
        "--weights",
        str(CKPT),
        "--data",
        str(SUBSET),
    ]
    argv += ["-o", "DataLoader.Eval.dataset.transform_ops.3.NormalizeImage.mean=[0.5,0.5,0.5]"]
    assert main(argv) == 2
    assert "NormalizeImage.mean [0.5, 0.5, 0.5] differs from shunted_t's" in capsys.readouterr().err


def test_backend_seam_takes_any_predict_batch(tmp_path):
    """Another backend plugs in as predict_batch(np.ndarray) -> logits; no Paddle model is built."""
    from shunted.data.datasets import ImageDataset, list_samples
    from shunted.data.transforms import EvalTransform
    from shunted.models import get_pretrained_cfg

    seen = []

    def always_class_3(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        out = np.zeros((len(x), 10), np.float32)
        out[:, 3] = 1
        return out

    transform = EvalTransform.from_config(get_pretrained_cfg("shunted_t"), img_size=64, resize_short=73)
    dataset = ImageDataset(list_samples(SUBSET, num_classes=10), transform, on_error="mark")
    r = run_evaluation(
        always_class_3,
        dataset,
        10,
        {"model": "any runtime"},
        EvalRun(batch_size=100, progress=False, workers=0),
    )
    assert r["n"] == 1000 and r["top1"]["correct"] == 100  # the 100 cats
    assert seen[0] == (100, 3, 64, 64)
    assert r["model"] == "any runtime" and r["preprocessing"]["img_size"] == 64 and r["batch_size"] == 100


@pytest.mark.parametrize("backend", ["dygraph", pytest.param("inference", marks=pytest.mark.slow)])
def test_eval_builds_the_model_once_and_hashes_the_weights_once(monkeypatch, tmp_path, backend):
    """``shunted eval`` (any backend) opens the checkpoint once: one create_model, one SHA-256 of the weights by the
    reader (a static backend's start-up shortcut reads the file once more to find itself); a second run of a
    static backend builds nothing (the shortcut), dygraph builds again."""
    import shunted.convert
    import shunted.factory
    import shunted.fileio

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # cold first: no other test's shortcut
    counts = {"create_model": 0, "sha256": 0}
    real_create, real_hash = shunted.factory.create_model, shunted.fileio.sha256_file

    def create_model(*args, **kwargs):
        counts["create_model"] += 1
        return real_create(*args, **kwargs)

    def sha256_file(*args, **kwargs):
        if Path(args[0]).resolve() == CKPT.resolve():
            counts["sha256"] += 1
        return real_hash(*args, **kwargs)

    monkeypatch.setattr(shunted.factory, "create_model", create_model)
    for module in list(sys.modules.values()):  # every module that bound sha256_file by name
        if (
            getattr(module, "__name__", "").startswith("shunted")
            and getattr(module, "sha256_file", None) is real_hash
        ):
            monkeypatch.setattr(module, "sha256_file", sha256_file)
    out = tmp_path / "r.json"
    argv = ["eval", *CIFAR_ARGS, "--data", str(SUBSET), "--limit", "4", "--workers", "0", "--no-progress"]
    assert main([*argv, "--backend", backend, "--threads", "1", "--output", str(out)]) == 0
    assert counts == {"create_model": 1, "sha256": 1}
    assert json.loads(out.read_text())["weights"]["sha256"] == hashlib.sha256(CKPT.read_bytes()).hexdigest()
    again = tmp_path / "again.json"
    assert main([*argv, "--backend", backend, "--threads", "1", "--output", str(again)]) == 0
    assert counts["create_model"] == (2 if backend == "dygraph" else 1)
    assert json.loads(again.read_text())["weights"] == json.loads(out.read_text())["weights"]


def test_topk_correct_counts_rank():
    logits = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1], [0.0, 0.0, 1.0]], np.float32)
    labels = np.array([2, 2, 0])
    assert topk_correct(logits, labels, 1).tolist() == [False, False, False]
    assert topk_correct(logits, labels, 2).tolist() == [True, False, True]
    assert topk_correct(logits, labels, 3).tolist() == [True, True, True]
