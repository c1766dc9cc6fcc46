"""The two dataset layouts: order, labels, ImageNet synset folders, label-file errors, bad images."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from shunted.data.datasets import BAD_LABEL, ImageDataset, list_samples
from shunted.data.transforms import EvalTransform
from shunted.errors import DataError


@pytest.fixture(scope="module")
def samples_dir(shared_dir) -> Path:
    return shared_dir / "data" / "imagenet-samples"


def _val_list(samples_dir: Path) -> list[tuple[str, int]]:
    lines = (samples_dir / "val_list.txt").read_text().splitlines()
    return [(rel, int(label)) for rel, label in (line.rsplit(maxsplit=1) for line in lines)]


def test_label_file_layout_keeps_file_order_and_labels(samples_dir, tmp_path):
    entries = _val_list(samples_dir)
    s = list_samples(samples_dir, labels=samples_dir / "val_list.txt", num_classes=1000)
    assert [s.relative(i) for i in range(len(s))] == [rel for rel, _ in entries]
    assert s.labels == [label for _, label in entries]
    assert s.layout == "label-file"
    # file order, not sorted order
    shuffled = tmp_path / "list.txt"
    shuffled.write_text("".join(f"{rel} {label}\n" for rel, label in reversed(entries)))
    s2 = list_samples(samples_dir, labels=shuffled)
    assert [s2.relative(i) for i in range(len(s2))] == [rel for rel, _ in reversed(entries)]


def test_synset_folders_map_to_the_standard_indices(samples_dir, tmp_path):
    """120 of the 1,000 classes as synset folders: labels are the standard 1k indices, as in val_list.txt."""
    for rel, _ in _val_list(samples_dir):
        folder = tmp_path / rel.split("_")[0]
        folder.mkdir()
        os.symlink(samples_dir / rel, folder / rel)
    s = list_samples(tmp_path, num_classes=1000)
    assert s.class_map == "imagenet-synsets"
    expected = dict(_val_list(samples_dir))
    assert [s.labels[i] for i in range(len(s))] == [expected[p.name] for p in s.paths]
    # without a 1000-class model, folders are numbered by sorted position
    s10 = list_samples(tmp_path)
    assert s10.class_map == "sorted-folders" and s10.labels == sorted(s10.labels) and s10.labels[-1] == 119


def _image(path: Path, value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_class_folders_sorted_classes_and_relative_paths(tmp_path):
    for rel in (
        "b/2.png",
        "b/10.png",
        "a/z/1.png",
        "a/0.png",
        "c/x.png",
        ".hidden/q.png",
        "b/.DS_Store",
        "a/n.txt",
    ):
        if rel.endswith(".png"):
            _image(tmp_path / rel)
        else:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text("x")
    s = list_samples(tmp_path)
    assert s.classes == ["a", "b", "c"]
    assert [s.relative(i) for i in range(len(s))] == [
        "a/0.png",
        "a/z/1.png",
        "b/10.png",
        "b/2.png",
        "c/x.png",
    ]
    assert s.labels == [0, 0, 1, 1, 2]
    assert [s.relative(i) for i in range(len(s.head(2)))] == ["a/0.png", "a/z/1.png"]
    with pytest.raises(DataError, match="3 class folders, but the model has 2 classes"):
        list_samples(tmp_path, num_classes=2)


def test_label_file_errors_are_named(tmp_path):
    _image(tmp_path / "img" / "a.png")
    _image(tmp_path / "img" / "b c.png")
    good = tmp_path / "ok.txt"
    good.write_text("# comment\na.png 1\n\nb c.png 0\n")
    s = list_samples(tmp_path / "img", labels=good, num_classes=2)
    assert s.labels == [1, 0] and s.paths[1].name == "b c.png"

    cases = {
        "a.png 0\nmissing.png 1\n": r"bad\.txt:2: missing\.png: no such file",
        "a.png 0\nb c.png\n": r"bad\.txt:2: expected 'relative/path label'",
        "a.png one\n": r"bad\.txt:1: expected 'relative/path label'",
        "a.png 0\nb c.png 2\n": r"bad\.txt: b c\.png: label 2 out of range for 2 classes",
        "a.png -1\n": r"bad\.txt: a\.png: label -1 out of range",
        "": r"bad\.txt: no images found",
    }
    bad = tmp_path / "bad.txt"
    for text, message in cases.items():
        bad.write_text(text)
        with pytest.raises(DataError, match=message):
            list_samples(tmp_path / "img", labels=bad, num_classes=2)
    with pytest.raises(FileNotFoundError):
        list_samples(tmp_path / "img", labels=tmp_path / "nope.txt")
    with pytest.raises(DataError, match="not a directory"):
        list_samples(tmp_path / "nope")
    with pytest.raises(DataError, match="no class folders"):
        list_samples(tmp_path / "img")


def test_dataset_items_and_bad_image_policy(tmp_path):
    _image(tmp_path / "a" / "good.png", 255)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    s = list_samples(tmp_path)
    t = EvalTransform(8, 8)
    image, label, index = ImageDataset(s, t)[1]
    assert (label, index) == (0, 1) and image.shape == (3, 8, 8) and image.dtype == np.float32
    np.testing.assert_allclose(image[:, 0, 0], (1 - np.array(t.mean)) / np.array(t.std), rtol=1e-6)
    with pytest.raises(DataError, match="broken.png"):
        ImageDataset(s, t)[0]
    image, label, index = ImageDataset(s, t, on_error="mark")[0]
    assert (label, index) == (BAD_LABEL, 0) and not image.any()


def test_copied_tree_is_independent_of_the_shared_folder(samples_dir, tmp_path):
    """A flat folder copy plus its label list works wherever it lives (relative paths)."""
    dst = tmp_path / "val"
    dst.mkdir()
    for rel, _ in _val_list(samples_dir)[:5]:
        shutil.copy(samples_dir / rel, dst / rel)
    lst = tmp_path / "val_list.txt"
    lst.write_text("".join(f"{rel} {label}\n" for rel, label in _val_list(samples_dir)[:5]))
    s = list_samples(dst, labels=lst, num_classes=1000)
    assert len(s) == 5 and all(p.is_file() for p in s.paths)
