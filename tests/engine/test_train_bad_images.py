"""An unreadable image in the training or validation data stops `shunted train` with one line naming the file,
whatever the loader's worker count (with ``--workers 0`` Paddle's loader thread used to hang on it for good)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def two_class_folder(cifar_test: Path, root: Path, per_class: int = 4) -> Path:
    for cls in ("airplane", "automobile"):
        (root / cls).mkdir(parents=True)
        for f in sorted((cifar_test / cls).iterdir())[:per_class]:
            shutil.copy(f, root / cls / f.name)
    return root


@pytest.mark.parametrize(
    ("workers", "where"),
    [
        ("0", "train"),
        pytest.param("1", "train", marks=pytest.mark.slow),
        pytest.param("0", "val", marks=pytest.mark.slow),
    ],
)
def test_an_unreadable_image_stops_training_in_one_line(shared_dir, tmp_path, workers, where):
    cifar_test = shared_dir / "data" / "cifar10" / "test"
    train = two_class_folder(cifar_test, tmp_path / "train")
    val = two_class_folder(cifar_test, tmp_path / "val", per_class=2)
    bad = (train if where == "train" else val) / "airplane" / "zz_broken.png"
    bad.write_bytes(b"not a png")
    argv = ["train", "--model", "shunted_t", "--data", str(train), "--val-data", str(val)]
    argv += ["--output", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "2", "--img-size", "32"]
    proc = subprocess.run(
        [sys.executable, "-m", "shunted", *argv, "--workers", workers],
        capture_output=True,
        text=True,
        timeout=240,  # the hang this guards against never ends
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{bad}: cannot read image" in errors[0]
    assert not (tmp_path / "run" / "last.pdparams").exists()


@pytest.mark.slow  # moved to the marked stage to keep the fast suite within its 5-minute budget
@pytest.mark.parametrize("what", ["image", "label value"])
def test_seg_train_stops_in_one_line_on_a_bad_sample(shared_dir, tmp_path, what):
    """A broken image (the loader thread used to hang on it with --workers 0), or CamVid's unlabelled 11 with the
    default --ignore-index 255 (an IndexError traceback from the loss), names the file in one line."""
    camvid = shared_dir / "data" / "camvid"
    lines = (camvid / "train.txt").read_text().splitlines()[:2]
    image, label = lines[0].split()
    data = tmp_path / "data"
    for rel in (image, label, *lines[1].split()):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(camvid / rel, data / rel)
    (data / "train.txt").write_text("\n".join(lines) + "\n")
    ignore = "255" if what == "label value" else "11"
    if what == "image":
        (data / image).write_bytes(b"not a jpeg")
    argv = ["seg-train", "--model", "shunted_t_fpn", "--data", str(data), "--list", "train.txt"]
    argv += ["--num-classes", "11", "--ignore-index", ignore, "--output", str(tmp_path / "run")]
    argv += ["--epochs", "1", "--batch-size", "2", "--crop-size", "64", "--workers", "0"]
    proc = subprocess.run(
        [sys.executable, "-m", "shunted", *argv], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    if what == "image":
        assert f"{data / image}: cannot read image" in errors[0]
    else:
        assert "label value 11 is outside 0..10" in errors[0] and ".png" in errors[0]
    assert not (tmp_path / "run" / "last.pdparams").exists()
