"""The bundled ImageNet-1k names and synsets: count, order, agreement with the sample files and val_list.txt."""

from __future__ import annotations

import pytest

from shunted.data.classnames import imagenet_class_names, imagenet_synsets, resolve_class_names
from shunted.errors import DataError


def test_thousand_sorted_unique_synsets_and_names():
    synsets, names = imagenet_synsets(), imagenet_class_names()
    assert len(synsets) == len(set(synsets)) == 1000 and list(synsets) == sorted(synsets)
    assert all(s.startswith("n") and len(s) == 9 and s[1:].isdigit() for s in synsets)
    assert len(names) == 1000 and all(names)


def test_indices_agree_with_val_list_and_file_names(shared_dir):
    """val_list.txt labels are positions in the sorted synsets; the file's class name is one of our names."""
    synsets, names = imagenet_synsets(), imagenet_class_names()
    lines = (shared_dir / "data" / "imagenet-samples" / "val_list.txt").read_text().splitlines()
    assert len(lines) == 120
    for line in lines:
        rel, label = line.rsplit(maxsplit=1)
        synset, _, file_name = rel.removesuffix(".JPEG").partition("_")
        assert synsets.index(synset) == int(label), rel
        lemmas = [n.strip().lower() for n in names[int(label)].split(",")]
        assert file_name.replace("_", " ").lower() in lemmas, (rel, names[int(label)])


def test_resolve_class_names(tmp_path):
    assert resolve_class_names(None, 1000)[0] == imagenet_class_names()[0]
    assert resolve_class_names(None, 10) is None
    f = tmp_path / "names.txt"
    f.write_text("cat\n\ndog\nbird\n")
    assert resolve_class_names(str(f), 3) == ["cat", "dog", "bird"]
    with pytest.raises(DataError, match="3 class names, but the model has 10 classes"):
        resolve_class_names(str(f), 10)
    with pytest.raises(DataError, match="1000 class names, but the model has 10"):
        resolve_class_names("imagenet", 10)
    with pytest.raises(FileNotFoundError):
        resolve_class_names(str(tmp_path / "missing.txt"), 3)
