"""``shunted seg-train`` on real CamVid frames (../shared/data/camvid, 11 classes, ignore 11), CPU, tiny crops.

The run folder (weights, metrics, summary, refusal to overwrite), the per-epoch validation against an independent
recomputation of mIoU, the poly schedule against its formula, the loss going down on a fixed batch, the config
schema (unknown keys, shipped CamVid YAML), one-line flag errors; resume equal to an uninterrupted run and two
processes under paddle.distributed.launch (slow stage).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rank_spy import spy_launch, written_by_rank0

from shunted.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track:UserWarning")

TINY = [
    "--crop-size",
    "64",
    "--batch-size",
    "2",
    "--workers",
    "0",
    "-o",
    "DataLoader.Eval.transform.scale=0.25",
]
CLASSES = "[Sky,Building,Pole,Road,Pavement,Tree,SignSymbol,Fence,Car,Pedestrian,Bicyclist]"


@pytest.fixture(scope="module")
def camvid(shared_dir) -> Path:
    return shared_dir / "data" / "camvid"


def subset(camvid: Path, source: str, n: int, out: Path, start: int = 0) -> Path:
    """The lines start..start+n of CamVid's ``source`` list, written to ``out`` (paths stay relative to camvid)."""
    lines = (camvid / source).read_text().splitlines()[start : start + n]
    out.write_text("\n".join(lines) + "\n")
    return out


def seg_argv(camvid: Path, train: Path, out: Path, *extra: str) -> list[str]:
    data = ["--data", str(camvid), "--list", str(train), "--num-classes", "11", "--ignore-index", "11"]
    return ["seg-train", "--model", "shunted_t_fpn", *data, "--output", str(out), *extra]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _pdparams(path: Path) -> dict[str, np.ndarray]:
    import paddle

    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}


def numpy_miou(pred: np.ndarray, label: np.ndarray, k: int, ignore: int) -> tuple[float, float]:
    """mIoU over classes present in label or prediction, and pixel accuracy (percent), written independently."""
    keep = label != ignore
    p, t = pred[keep], label[keep]
    ious = []
    for c in range(k):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        if union:
            ious.append(inter / union)
    return 100.0 * float(np.mean(ious)), 100.0 * float(np.mean(p == t))


def test_seg_train_writes_the_run_folder_and_validates(camvid, tmp_path, capsys):
    train = subset(camvid, "train.txt", 4, tmp_path / "train.txt")  # 2 steps of 2 per epoch
    val = subset(camvid, "val.txt", 1, tmp_path / "val.txt")
    run = tmp_path / "run"
    argv = seg_argv(camvid, train, run, "--epochs", "2", "--val-list", str(val), *TINY)
    argv += ["-o", f"Arch.class_names={CLASSES}"]
    assert main(argv) == 0

    names = {p.name for p in run.iterdir()}
    assert {
        "last.pdckpt",
        "last.pdparams",
        "best.pdparams",
        "metrics.csv",
        "summary.json",
        "config.yaml",
    } <= names
    rows = read_csv(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"lr", "train_loss", "val_miou", "val_pixel_acc", "seconds"} <= set(rows[0])
    losses = [float(r["train_loss"]) for r in rows]
    assert all(math.isfinite(v) and 0 < v < 10 for v in losses)
    # poly, power 1, 4 iterations in all: epoch 1 starts at it 0 (the peak), epoch 2 at it 2 (half of it)
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-4, 5e-5], rel=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_classes"] == 11 and summary["ignore_index"] == 11
    assert summary["class_names"][0] == "Sky" and len(summary["class_names"]) == 11
    mious = [float(r["val_miou"]) for r in rows]
    assert summary["best_epoch"] == int(np.argmax(mious)) + 1

    # epoch 2's validation, recomputed independently from last.pdparams (= the weights after epoch 2)
    import paddle
    import paddle.nn.functional as F
    from PIL import Image

    from shunted import create_model
    from shunted.data.seg_datasets import read_label

    model = create_model("shunted_t_fpn", pretrained=str(run / "last.pdparams"))
    model.eval()
    image_rel, label_rel = val.read_text().split()
    image = Image.open(camvid / image_rel).convert("RGB")
    label = read_label(camvid / label_rel)
    small = image.resize(
        (int(image.width * 0.25 + 0.5), int(image.height * 0.25 + 0.5)), Image.Resampling.BILINEAR
    )
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((np.asarray(small, np.float32) / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1)[None]
    with paddle.no_grad():
        logits = F.interpolate(model(paddle.to_tensor(x)), size=list(label.shape), mode="bilinear")
    pred = logits.argmax(axis=1)[0].numpy()
    miou, acc = numpy_miou(pred, label, 11, 11)
    assert float(rows[1]["val_miou"]) == pytest.approx(miou, abs=0.05)
    assert float(rows[1]["val_pixel_acc"]) == pytest.approx(acc, abs=0.05)

    # the folder holds a run: refused without --resume, one line
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shunted seg-train: error: ") and "--resume" in err[0]


@pytest.mark.slow  # moved to the marked stage to keep the fast suite within its 5-minute budget
def test_loss_goes_down_on_a_fixed_batch(camvid, tmp_path):
    """No augmentation (whole 64×48 images, no flip/colour), the same two images in every step: the loss falls."""
    two = (camvid / "train.txt").read_text().splitlines()[:2]
    train = tmp_path / "train.txt"
    train.write_text("\n".join(two * 3) + "\n")  # 3 steps of the same pair per epoch
    fixed = [
        "DataLoader.Train.transform.base_size=[64,48]",
        "DataLoader.Train.transform.scale_range=[1.0,1.0]",
    ]
    fixed += ["DataLoader.Train.transform.flip_prob=0", "DataLoader.Train.transform.photometric=false"]
    fixed += ["DataLoader.Train.transform.cat_max_ratio=1.0", "Arch.drop_path_rate=0.0"]
    argv = seg_argv(camvid, train, tmp_path / "run", "--epochs", "2", "--lr", "1e-3", *TINY)
    assert main(argv + [x for o in fixed for x in ("-o", o)]) == 0
    losses = [float(r["train_loss"]) for r in read_csv(tmp_path / "run" / "metrics.csv")]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[1] < 0.8 * losses[0], losses


def test_poly_schedule_matches_its_formula():
    from shunted.engine.seg.train import poly_lr

    assert poly_lr(0, 100, 1e-4) == pytest.approx(1e-4)
    assert poly_lr(50, 100, 1e-4) == pytest.approx(5e-5)
    assert poly_lr(100, 100, 1e-4) == pytest.approx(0.0)
    assert poly_lr(50, 100, 1e-4, power=0.9, end_lr=1e-6) == pytest.approx((1e-4 - 1e-6) * 0.5**0.9 + 1e-6)
    # mmcv's linear warm-up: the poly rate times 1 - (1 - it/warmup)(1 - ratio)
    assert poly_lr(0, 100, 1e-4, warmup_iters=10, warmup_ratio=0.1) == pytest.approx(1e-5)
    assert poly_lr(5, 100, 1e-4, warmup_iters=10, warmup_ratio=0.1) == pytest.approx(0.95e-4 * 0.55)
    assert poly_lr(10, 100, 1e-4, warmup_iters=10, warmup_ratio=0.1) == pytest.approx(0.9e-4)


def _error(capsys, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's type errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shunted seg-train: error: "), err
    return err[0]


def test_bad_flags_and_config_keys_are_one_line_errors(camvid, tmp_path, capsys):
    train = camvid / "train.txt"
    run = tmp_path / "run"
    base = seg_argv(camvid, train, run)
    assert "--crop-size" in _error(capsys, [*base, "--crop-size", "0"])
    assert "--ignore-index" in _error(capsys, [*base, "--ignore-index", "300"])
    no_classes = ["seg-train", "--model", "shunted_t_fpn", "--data", str(camvid), "--output", str(run)]
    assert "--num-classes: required" in _error(capsys, no_classes)
    msg = _error(capsys, [*base[:-2], "--ignore-index", "3", "--output", str(run)])
    assert "--ignore-index 3" in msg and "11 classes" in msg
    msg = _error(capsys, [*base, "-o", "Optimizer.lr.powr=0.9"])
    assert "unknown key Optimizer.lr.powr (did you mean Optimizer.lr.power?)" in msg
    msg = _error(capsys, [*base, "-o", "Arch.class_names=[a,b]"])
    assert "2 names for 11 classes" in msg
    bad = tmp_path / "bad.yaml"
    bad.write_text("Arch:\n  num_class: 11\n")
    msg = _error(capsys, [*base, "-c", str(bad)])
    assert str(bad) in msg and "unknown key Arch.num_class (did you mean Arch.num_classes?)" in msg
    bad.write_text("DataLoader:\n  Train:\n    transform:\n      crop_size: [64]\n")
    assert "DataLoader.Train.transform.crop_size: expected two integers" in _error(
        capsys, [*base, "-c", str(bad)]
    )
    msg = _error(capsys, ["seg-train", *base[3:], "--model", "shunted_t"])
    assert "Arch.name: 'shunted_t'" in msg and "shunted_t_fpn" in msg and "(--model)" in msg
    assert not run.exists()  # nothing was created


def test_shipped_camvid_config_is_generated_and_resolves(repo_root, camvid, tmp_path):
    import argparse

    from shunted.engine.seg.config import (
        camvid_defaults,
        load_seg_config,
        render_camvid_yaml,
        resolve_seg_config,
    )

    path = repo_root / "configs" / "shunted_t_fpn_camvid.yaml"
    assert path.read_text() == render_camvid_yaml("shunted_t_fpn")
    assert load_seg_config(path) == camvid_defaults("shunted_t_fpn")
    args = argparse.Namespace(
        config=str(path),
        override=["Global.seed=3"],
        data=str(camvid),
        output=str(tmp_path / "r"),
        crop_size=96,
    )
    cfg = resolve_seg_config(args)
    assert cfg["Arch"]["num_classes"] == 11 and cfg["Arch"]["ignore_index"] == 11
    assert cfg["DataLoader"]["Train"]["transform"]["crop_size"] == [96, 96]  # the flag wins
    assert cfg["Global"]["seed"] == 3
    assert cfg["Optimizer"]["learning_rate"] == 1e-4 and cfg["Optimizer"]["weight_decay"] == 1e-4
    assert cfg["Optimizer"]["lr"]["power"] == 1.0


@pytest.mark.slow  # integration (full runs): the marked stage, make test-slow
def test_resume_after_interrupt_equals_uninterrupted_run(camvid, tmp_path, monkeypatch):
    from shunted.engine.train import loop as train_loop
    from shunted.engine.train.state import load_checkpoint

    train = subset(camvid, "train.txt", 4, tmp_path / "train.txt")
    val = subset(camvid, "val.txt", 1, tmp_path / "val.txt")
    extra = ["--epochs", "2", "--val-list", str(val), *TINY, "--workers", "1"]
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert main(seg_argv(camvid, train, full, *extra)) == 0

    original = train_loop.Trainer.train_epoch

    def interrupt_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(train_loop.Trainer, "train_epoch", interrupt_second_epoch)
    assert main(seg_argv(camvid, train, stopped, *extra)) == 130
    assert load_checkpoint(stopped / "last.pdckpt")["epoch"] == 1
    monkeypatch.setattr(train_loop.Trainer, "train_epoch", original)
    assert main(seg_argv(camvid, train, stopped, *extra, "--resume")) == 0

    a, b = _pdparams(full / "last.pdparams"), _pdparams(stopped / "last.pdparams")
    assert a.keys() == b.keys()
    assert [k for k in a if not np.array_equal(a[k], b[k])] == []
    ra, rb = load_checkpoint(full / "last.pdckpt"), load_checkpoint(stopped / "last.pdckpt")
    for key in ("lr", "train_loss", "val_miou", "val_pixel_acc"):
        assert [r[key] for r in ra["metrics"]] == [r[key] for r in rb["metrics"]]
    moments = [k for k in ra["optimizer"] if "moment" in k]
    assert moments and all(np.array_equal(ra["optimizer"][k], rb["optimizer"][k]) for k in moments)


@pytest.mark.slow  # integration (subprocess launcher): the marked stage, make test-slow
def test_two_processes_through_paddle_distributed_launch(camvid, tmp_path):
    """Both ranks end with the same weights; only rank 0 writes; validation covers the whole list once."""
    script, env, spy_dir = spy_launch(tmp_path)
    train = subset(camvid, "train.txt", 4, tmp_path / "train.txt")
    val = subset(camvid, "val.txt", 2, tmp_path / "val.txt")
    run = tmp_path / "run"
    argv = seg_argv(camvid, train, run, "--epochs", "1", "--val-list", str(val), *TINY)
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--log_dir", str(tmp_path / "log")]
    done = subprocess.run([*launch, "--nproc_per_node", "2", *script, *argv], env=env, capture_output=True)
    assert done.returncode == 0, (tmp_path / "log" / "workerlog.0").read_text()[-2000:]

    written = written_by_rank0(spy_dir)
    assert {"last.pdckpt", "last.pdparams", "metrics.json", "summary.json"} <= written
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["weights_sha256_per_rank"] == [summary["weights_sha256"][:32]] * 2
    rows = json.loads((run / "metrics.json").read_text())
    assert rows[0]["images"] == 4  # 1 step x 2 images x 2 processes, all-reduced
    assert rows[0]["val_miou"] is not None


@pytest.mark.slow  # integration (two training subprocesses): the marked stage, make test-slow
def test_camvid_benchmark_script_runs_end_to_end(repo_root, camvid, tmp_path):
    """benchmarks/seg_camvid.py in a tiny setting: both runs, the tables, the figures (no figure asserted)."""
    out = tmp_path / "out"
    tiny = ["--epochs", "1", "--steps", "1", "--batch-size", "2", "--crop", "64", "--val-images", "1"]
    tiny += ["--speed-images", "1", "--eval-interval", "1", "--warmup", "0", "--workers", "0"]
    done = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "seg_camvid.py"), "--data", str(camvid), *tiny]
        + ["--work", str(tmp_path / "runs"), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "seg_camvid.json").read_text())
    assert set(result["runs"]) == {"pretrained", "scratch"}
    assert all(len(r["class_iou"]) == 11 for r in result["runs"].values())
    assert result["speed"]["full"]["max_rel_diff_logits"] < 1e-4  # the same network in both frameworks
    assert {"curves.png", "overlay.png", "seg_camvid.md"} <= {p.name for p in out.iterdir()}
