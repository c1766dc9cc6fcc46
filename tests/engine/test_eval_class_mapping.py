"""Evaluation and training map class folders to the model's classes by name (issue 11, item 4).

The accuracy case uses the demo checkpoint and real CIFAR-10 test images from ../shared: a folder holding only
cat/ and dog/ must score what the predictions score (labels 3 and 5), not 0 % (labels 0 and 1 by position).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shunted.cli import main
from shunted.engine.evaluate import evaluate_checkpoint
from shunted.engine.session import given_predictor
from shunted.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track:UserWarning")

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PRE = dict(img_size=64, resize_short=73)


def _copy(src: Path, dst: Path, classes: tuple[str, ...], n: int) -> Path:
    for cls in classes:
        (dst / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:n]:
            shutil.copy(f, dst / cls / f.name)
    return dst


def _image(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)


def test_cat_and_dog_only_score_the_real_accuracy(shared_dir, tmp_path):
    ckpt = shared_dir / "demo" / "ckpt_T_cifar10_fp16.pth"
    data = _copy(shared_dir / "data" / "cifar10" / "test", tmp_path / "D", ("cat", "dog"), 5)
    r = evaluate_checkpoint(
        "shunted_t", ckpt, data, **PRE, workers=0, progress=False, save_logits_to=tmp_path / "l.npy"
    )
    logits = np.load(tmp_path / "l.npy")
    truth = np.array([CIFAR10.index("cat")] * 5 + [CIFAR10.index("dog")] * 5)  # sorted paths: cats first
    right = int((logits.argmax(1) == truth).sum())
    assert right >= 8  # the demo model is 89 % accurate on CIFAR-10
    assert r["top1"]["correct"] == right and r["top1"]["percent"] == pytest.approx(10.0 * right)
    assert r["data"]["class_map"] == "class-names"
    assert r["data"]["class_index"] == {"cat": 3, "dog": 5}
    assert r["data"]["class_mapping"].startswith(
        "by folder name (class names from the bundled demo checkpoint"
    )


def _constant(cls: int):
    def predict(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), 10), np.float32)
        out[:, cls] = 1.0
        return out

    return predict


def test_class_names_flag_maps_by_name_and_unknown_names_are_an_error(tmp_path):
    """Weights with no recorded names: 2 folders for 10 classes stop; --class-names gives the mapping."""
    weights = tmp_path / "w.pdparams"
    weights.write_bytes(b"only hashed: the predictor is given")
    data = tmp_path / "D"
    for i in range(3):
        _image(data / "cat" / f"{i}.png", i)
    _image(data / "dog" / "0.png", 9)
    opened = given_predictor("shunted_t", weights, 10, _constant(3))
    common = dict(num_classes=10, **PRE, workers=0, progress=False, opened=opened)
    with pytest.raises(DataError, match="2 class folders, but the model has 10 classes .*--class-names FILE"):
        evaluate_checkpoint("shunted_t", weights, data, **common)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(CIFAR10) + "\n")
    r = evaluate_checkpoint("shunted_t", weights, data, class_names=names, **common)
    assert r["top1"]["correct"] == 3  # the three cats: class 3
    assert r["data"]["class_index"] == {"cat": 3, "dog": 5}
    assert r["data"]["class_names_source"] == f"--class-names {names}"
    # a folder that is not one of the named classes
    _image(data / "kitten" / "0.png", 1)
    with pytest.raises(DataError, match="folder 'kitten' is not one of the model's classes"):
        evaluate_checkpoint("shunted_t", weights, data, class_names=names, **common)


def test_eval_command_class_names_flag_is_recorded(tmp_path):
    """``shunted eval --class-names FILE`` on weights with no recorded names (random, 10 classes)."""
    import paddle

    import shunted

    weights = tmp_path / "random10.pdparams"
    paddle.save(shunted.create_model("shunted_t", num_classes=10).state_dict(), str(weights))
    data = tmp_path / "D"
    _image(data / "cat" / "0.png", 0)
    _image(data / "dog" / "0.png", 1)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(CIFAR10) + "\n")
    out = tmp_path / "r.json"
    argv = ["eval", "--backend=dygraph", "--model", "shunted_t", "--weights", str(weights), "--data", str(data)]
    argv += ["--img-size", "64", "--resize-short", "73", "--workers", "0", "--no-progress"]
    assert main([*argv, "--class-names", str(names), "--output", str(out)]) == 0
    record = json.loads(out.read_text())["data"]
    assert record["class_index"] == {"cat": 3, "dog": 5}
    assert record["class_mapping"] == f"by folder name (class names from --class-names {names})"


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    argv = ["train", "--model", "shunted_t", "--data", str(data), "--output", str(out), "--epochs", "1"]
    return argv + ["--img-size", "32", "--batch-size", "2", "--workers", "0", *extra]


def test_train_single_class_and_unknown_val_folder_are_errors(tmp_path, capsys):
    """One-line errors, before any output is written."""
    one = tmp_path / "one"
    for i in range(4):
        _image(one / "cat" / f"{i}.png", i)
    assert main(_train_argv(one, tmp_path / "run1")) == 2
    err = capsys.readouterr().err
    assert "one class only (class folder 'cat')" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "run1").exists()

    train = tmp_path / "train"
    for cls, base in (("cat", 0), ("dog", 10)):
        for i in range(2):
            _image(train / cls / f"{i}.png", base + i)
    val = tmp_path / "val"
    _image(val / "cat" / "0.png", 20)
    _image(val / "bird" / "0.png", 21)
    assert main(_train_argv(train, tmp_path / "run2", "--val-data", str(val))) == 2
    err = capsys.readouterr().err
    assert f"{val / 'bird'}: folder 'bird' is not one of the model's classes" in err
    assert f"the class folders of --data {train}" in err
    assert not (tmp_path / "run2").exists()


def test_train_val_folders_map_by_the_training_class_names(tmp_path):
    """Validation on dog/ only: label 1 (dog's index in training), not 0 (its position among val folders)."""
    from shunted.engine.train import Trainer
    from shunted.engine.train.config import resolve_config

    train = tmp_path / "train"
    for cls, base in (("cat", 0), ("dog", 10)):
        for i in range(2):
            _image(train / cls / f"{i}.png", base + i)
    val = tmp_path / "val"
    _image(val / "dog" / "0.png", 30)
    _image(val / "dog" / "1.png", 31)
    args = shunted_args(_train_argv(train, tmp_path / "run", "--val-data", str(val)))
    trainer = Trainer(resolve_config(args))
    samples = trainer.task.val_set.samples
    assert samples.labels == [1, 1] and samples.class_index == {"dog": 1}


def shunted_args(argv: list[str]):
    from shunted.cli import build_parser

    return build_parser().parse_args(argv)


def test_predict_names_the_demo_checkpoint_s_classes(repo_root, tmp_path):
    """Without --labels, predict uses the names the package records for the bundled demo checkpoint."""
    ckpt = repo_root / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
    image = repo_root / "shunted" / "assets" / "cifar10-demo" / "cat" / "0000.jpg"
    out = tmp_path / "p.json"
    argv = [
        "predict",
        "--backend=dygraph",
        "--model",
        "shunted_t",
        "--weights",
        str(ckpt),
        "--img-size",
        "64",
        "--resize-short",
        "73",
    ]
    assert main([*argv, "--topk", "3", "--output", str(out), str(image)]) == 0
    record = json.loads(out.read_text())
    assert "bundled demo checkpoint" in record["labels"]
    assert [t["name"] for t in record["predictions"][0]["top"]] == [
        CIFAR10[t["index"]] for t in record["predictions"][0]["top"]
    ]
