"""``shunted predict``: top-k order, probabilities, class names (a file, or the bundled ImageNet names), JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shunted.cli import main
from shunted.data.classnames import imagenet_class_names
from shunted.engine.evaluate import evaluate_checkpoint
from shunted.engine.predict import expand_inputs, softmax
from shunted.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SUBSET = REPO / "shunted" / "assets" / "cifar10-demo"
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
CLASSES = sorted(p.name for p in SUBSET.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def names_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("names") / "cifar10.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def test_predict_matches_evaluation_logits_with_names(tmp_path, names_file, capsys):
    images = [SUBSET / "cat" / "0000.jpg", SUBSET / "ship" / "0001.jpg"]
    out = tmp_path / "p.json"
    argv = [
        "predict",
        "--backend=dygraph",
        "--model",
        "shunted_t",
        "--weights",
        str(CKPT),
        "--img-size",
        "64",
        "--resize-short",
        "73",
    ]
    assert (
        main([*argv, "--labels", str(names_file), "--topk", "3", "--output", str(out), *map(str, images)])
        == 0
    )
    preds = json.loads(out.read_text())["predictions"]
    assert [p["path"] for p in preds] == [str(p) for p in images]

    # the same images through `shunted eval` (a label file of the two) give the same logits
    lst = tmp_path / "two.txt"
    lst.write_text("cat/0000.jpg 3\nship/0001.jpg 8\n")
    evaluate_checkpoint(
        "shunted_t", CKPT, SUBSET, labels=lst, img_size=64, resize_short=73, workers=0,
        save_logits_to=tmp_path / "l.npy", progress=False,
    )  # fmt: skip
    logits = np.load(tmp_path / "l.npy")
    probs = softmax(logits)
    for pred, row, prow in zip(preds, logits, probs, strict=True):
        top = pred["top"]
        assert [t["index"] for t in top] == list(np.argsort(-row)[:3])
        assert [t["name"] for t in top] == [CLASSES[t["index"]] for t in top]
        np.testing.assert_allclose([t["logit"] for t in top], np.sort(row)[::-1][:3], atol=1e-5)
        np.testing.assert_allclose([t["prob"] for t in top], np.sort(prow)[::-1][:3], atol=1e-6)
        assert top[0]["prob"] >= top[1]["prob"] >= top[2]["prob"]
    printed = capsys.readouterr().out
    assert f"[{preds[0]['top'][0]['index']}]  {preds[0]['top'][0]['name']}" in printed


def test_imagenet_names_for_a_1000_class_model(tmp_path, shared_dir):
    """A 1000-class model (random weights saved to .pdparams) is labelled with the bundled ImageNet names."""
    import paddle

    import shunted

    weights = tmp_path / "random1k.pdparams"
    paddle.save(shunted.create_model("shunted_t").state_dict(), str(weights))
    img = shared_dir / "data" / "imagenet-samples" / "n01440764_tench.JPEG"
    out = tmp_path / "p.json"
    argv = ["predict", "--backend=dygraph", "--model", "shunted_t", "--weights", str(weights), str(img), "--topk", "2"]
    assert main([*argv, "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    top = result["predictions"][0]["top"]
    assert len(top) == 2 and all(t["name"] == imagenet_class_names()[t["index"]] for t in top)
    assert result["labels"] == "imagenet" and result["preprocessing"]["img_size"] == 224


def test_errors_are_one_line(tmp_path, names_file, capsys):
    base = ["predict", "--backend=dygraph", "--model", "shunted_t", "--weights", str(CKPT)]
    assert main([*base, "--labels", "imagenet", str(SUBSET / "cat" / "0000.jpg")]) == 2
    assert "1000 class names, but the model has 10 classes" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg: no such file or folder" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_text("text")
    assert main([*base, "--labels", str(names_file), str(bad)]) == 2
    assert "bad.jpg: cannot read image" in capsys.readouterr().err


def test_expand_inputs_sorts_folders(tmp_path):
    for rel in ("b/1.jpg", "a/2.png", "a/10.png", "a/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    single = tmp_path / "b" / "1.jpg"
    got = expand_inputs([single, tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["b/1.jpg", "a/10.png", "a/2.png", "b/1.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        expand_inputs([tmp_path / "empty"])
