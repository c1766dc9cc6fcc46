"""Class folders map to the model's classes by name when the names are known; never a silent positional guess.

Also: where names are found beside a checkpoint (``classnames.known_class_names``), and symbolic links (a
``loop -> .`` counts each image once, a file in two classes is an error).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from shunted.data.classnames import imagenet_synsets
from shunted.data.datasets import list_samples
from shunted.errors import DataError

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DEMO_SHA256 = "d248b4c63ffbf4faf55d8a9a253fad1ba61199191a8d5f69bc5b48f0d1b37dcf"  # assets/demo/README.md


def _image(path: Path, value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _tree(root: Path, spec: dict[str, int]) -> Path:
    for cls, n in spec.items():
        for i in range(n):
            _image(root / cls / f"{i}.png", i)
    return root


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# -- mapping -------------------------------------------------------------------------------------------------


def test_folders_map_by_name_when_the_names_are_known(tmp_path):
    """cat/ and dog/ of the 10 CIFAR classes are labels 3 and 5, not 0 and 1 (issue 11, item 4)."""
    data = _tree(tmp_path, {"cat": 2, "dog": 3})
    s = list_samples(data, num_classes=10, class_names=CIFAR10, names_source="names.txt")
    assert s.labels == [3, 3, 5, 5, 5]
    assert s.class_map == "class-names" and s.class_index == {"cat": 3, "dog": 5}
    assert s.describe()["class_mapping"] == "by folder name (class names from names.txt)"
    assert s.head(1).class_index == {"cat": 3, "dog": 5}  # --limit keeps the record


def test_a_folder_that_is_not_a_known_class_is_an_error_naming_it(tmp_path):
    data = _tree(tmp_path, {"cat": 1, "kitten": 1})
    with pytest.raises(DataError) as exc:
        list_samples(data, num_classes=10, class_names=CIFAR10, names_source="names.txt")
    message = _one_line(exc)
    assert f"{data / 'kitten'}: folder 'kitten' is not one of the model's classes" in message
    assert "names.txt" in message


def test_unknown_names_and_another_folder_count_is_an_error_saying_how(tmp_path):
    """2 folders for a 10-class model: no positional guess; the message says how to give the mapping."""
    data = _tree(tmp_path, {"cat": 1, "dog": 1})
    with pytest.raises(DataError) as exc:
        list_samples(data, num_classes=10)
    message = _one_line(exc)
    assert "2 class folders, but the model has 10 classes" in message
    assert "--class-names FILE" in message and "--labels FILE" in message
    # the caller's own hint (train: --val-labels) replaces the default
    with pytest.raises(DataError, match="use --val-labels"):
        list_samples(data, num_classes=10, hint="use --val-labels")


def test_unknown_names_and_equal_counts_keep_sorted_order_and_say_so(tmp_path):
    data = _tree(tmp_path, {"b": 1, "a": 1, "c": 1})
    s = list_samples(data, num_classes=3)
    assert s.labels == [0, 1, 2] and s.class_map == "sorted-folders"
    assert s.describe() == {
        "class_mapping": "sorted folder order (class names unknown)",
        "class_names_source": None,
        "class_index": {"a": 0, "b": 1, "c": 2},
        "links_skipped": [],
    }


def test_synsets_mixed_with_other_folders_is_an_error(tmp_path):
    """A 1000-class model: synset folders map by synset; one other folder among them is named, not guessed."""
    synsets = imagenet_synsets()
    data = _tree(tmp_path, {synsets[7]: 1, synsets[999]: 1})
    s = list_samples(data, num_classes=1000)
    assert s.labels == [7, 999] and s.class_map == "imagenet-synsets"
    _image(data / "goldfish" / "0.png")
    with pytest.raises(DataError) as exc:
        list_samples(data, num_classes=1000)
    assert f"{data / 'goldfish'}: folder 'goldfish' is not an ImageNet-1k synset id" in _one_line(exc)


def test_names_longer_than_the_model_or_repeated_are_errors(tmp_path):
    data = _tree(tmp_path, {"cat": 1})
    with pytest.raises(DataError, match="names.txt: 10 class names, but the model has 5 classes"):
        list_samples(data, num_classes=5, class_names=CIFAR10, names_source="names.txt")
    with pytest.raises(DataError, match="names.txt: class name 'cat' is listed twice"):
        list_samples(data, num_classes=3, class_names=["cat", "dog", "cat"], names_source="names.txt")


# -- where names are found -----------------------------------------------------------------------------------


def test_known_class_names_sources(tmp_path):
    from shunted.data.classnames import known_class_names

    weights = tmp_path / "w.pdparams"
    weights.write_bytes(b"not read: only hashed")
    assert known_class_names(weights, 10) is None  # nothing records them

    names = tmp_path / "names.txt"
    names.write_text("\n".join(CIFAR10) + "\n")
    got = known_class_names(weights, 10, names)
    assert got.names == tuple(CIFAR10) and got.source == f"--class-names {names}"
    with pytest.raises(DataError, match=r"--class-names .*names\.txt: 10 class names, but the model has 5"):
        known_class_names(weights, 5, names)
    names.write_text("cat\ndog\ncat\n")
    with pytest.raises(DataError, match="'cat' is listed twice"):
        known_class_names(weights, 3, names)

    # the sidecar `shunted convert` writes: converted from the bundled demo checkpoint (its source sha256)
    sidecar = tmp_path / "w.pdparams.json"
    sidecar.write_text(json.dumps({"source": {"name": "ckpt_T_cifar10_fp16.pth", "sha256": DEMO_SHA256}}))
    got = known_class_names(weights, 10)
    assert got.names == tuple(CIFAR10) and str(sidecar) in got.source
    # a sidecar that lists classes
    sidecar.write_text(json.dumps({"classes": ["x", "y"]}))
    assert known_class_names(weights, 2).names == ("x", "y")
    with pytest.raises(DataError, match="2 class names, but the weights have 10 classes"):
        known_class_names(weights, 10)
    sidecar.write_text("{not json")  # not a record of ours: ignored
    assert known_class_names(weights, 10) is None

    # a training run: summary.json beside last.pdparams (engine/train/loop.py writes both)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pdparams").write_bytes(b"w")
    (run / "summary.json").write_text(json.dumps({"num_classes": 3, "classes": ["c0", "c1", "c2"]}))
    got = known_class_names(run / "last.pdparams", 3)
    assert got.names == ("c0", "c1", "c2") and got.source == str(run / "summary.json")


def test_the_bundled_demo_checkpoint_is_known_by_its_sha256(repo_root):
    """The package records the demo's classes (assets/demo/expected.json), found by the file's sha256."""
    from shunted.data.classnames import bundled_checkpoints, known_class_names

    assert bundled_checkpoints() == {DEMO_SHA256: tuple(CIFAR10)}
    got = known_class_names(repo_root / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth", 10)
    assert got.names == tuple(CIFAR10) and "bundled demo checkpoint" in got.source


# -- symbolic links ------------------------------------------------------------------------------------------


def test_a_symlink_loop_counts_each_image_once(tmp_path, caplog):
    """``cat/loop -> .`` used to make one image count 41 times (os.walk followlinks without a cycle check)."""
    data = _tree(tmp_path / "d", {"cat": 1, "dog": 2})
    os.symlink(".", data / "cat" / "loop")
    os.symlink("..", data / "dog" / "up")  # the data root: encloses dog/, also a loop
    with caplog.at_level(logging.WARNING, logger="shunted.data.datasets"):
        s = list_samples(data)
    assert [s.relative(i) for i in range(len(s))] == ["cat/0.png", "dog/0.png", "dog/1.png"]
    assert s.labels == [0, 1, 1]
    assert s.links_skipped == ["cat/loop", "dog/up"]
    assert "cat/loop: links to a folder already listed" in caplog.text


def test_links_to_one_file_count_once_and_a_file_in_two_classes_is_an_error(tmp_path):
    data = _tree(tmp_path / "d", {"cat": 1, "dog": 1})
    os.symlink("0.png", data / "cat" / "again.png")
    (data / "cat" / "sub").mkdir()
    os.symlink("../0.png", data / "cat" / "sub" / "deeper.png")
    s = list_samples(data)
    assert [s.relative(i) for i in range(len(s))] == ["cat/0.png", "dog/0.png"]  # first in sorted order
    os.symlink("../cat/0.png", data / "dog" / "stolen.png")
    with pytest.raises(DataError) as exc:
        list_samples(data)
    assert "dog/stolen.png: the same file as" in _one_line(exc) and "in two classes (cat, dog)" in str(
        exc.value
    )
    # a folder of one class linked into another: its files would get two labels
    (data / "dog" / "stolen.png").unlink()
    os.symlink("../cat", data / "dog" / "cats")
    with pytest.raises(DataError, match="in two classes"):
        list_samples(data)
