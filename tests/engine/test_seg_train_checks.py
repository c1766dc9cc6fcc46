"""seg-train checks what a run will need before it starts (issue 20 #5, #8, #9), on six synthetic 64x48 frames:
a label value outside the random crop, a bad validation label and a crop larger than any image can become all
stop the command in one line before the model is built — no run folder, no config.yaml, no epoch lost. The old
code trained (a value outside the crop: exit 0 with --epochs 1; a bad validation label: after a whole epoch)
or padded every crop to the flag (18 GB at --crop-size 1024, a MemoryError traceback at 2048)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shunted.cli import main
from shunted.data import seg_labels


def frames(root, n=6, bad_train=None, bad_val=None):
    """n RGB frames + labels (values 0..3) under root; ``bad_*``: index of a label with a 4x4 block of 200 in
    its bottom-right corner. train.txt: the first four, val.txt: the last two."""
    (root / "img").mkdir(parents=True)
    (root / "ann").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
        label = rng.integers(0, 4, (48, 64), dtype=np.uint8)
        if i in (bad_train, bad_val):
            label[-4:, -4:] = 200
        Image.fromarray(label).save(root / "ann" / f"{i}.png")
        lines.append(f"img/{i}.png ann/{i}.png")
    (root / "train.txt").write_text("\n".join(lines[:4]) + "\n")
    (root / "val.txt").write_text("\n".join(lines[4:]) + "\n")
    return root


def argv(root, out, *extra):
    return [
        "seg-train", "--model", "shunted_t_fpn", "--data", str(root), "--list", str(root / "train.txt"),
        "--num-classes", "4", "--output", str(out), "--epochs", "1", "--max-steps", "1", "--workers", "0",
        "--batch-size", "2", "--crop-size", "32", *extra,
    ]  # fmt: skip


def one_line_error(capsys, args) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_bad_value_outside_the_crop_stops_before_training(tmp_path, capsys):
    root = frames(tmp_path / "d", bad_train=2)
    msg = one_line_error(capsys, argv(root, tmp_path / "run"))
    assert f"{root / 'ann' / '2.png'}: label value 200 is outside 0..3 and is not --ignore-index 255" in msg
    assert "nothing was trained" in msg
    assert not (tmp_path / "run").exists()


def test_a_bad_validation_label_stops_before_the_first_epoch(tmp_path, capsys):
    root = frames(tmp_path / "d", bad_val=5)
    msg = one_line_error(capsys, argv(root, tmp_path / "run", "--val-list", str(root / "val.txt")))
    assert f"{root / 'ann' / '5.png'}: label value 200" in msg and "--val-list" in msg
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("crop", ["1024", "2048"])
def test_a_crop_larger_than_any_image_can_become_is_refused(tmp_path, capsys, crop):
    root = frames(tmp_path / "d")
    args = argv(root, tmp_path / "run")
    args[args.index("--crop-size") + 1] = crop
    msg = one_line_error(capsys, args)
    # 64x48 rescaled by at most 2.0: 96 x 128 (height x width)
    assert f"--crop-size {crop}x{crop}" in msg and "taller and wider" in msg and "use at most 96x128" in msg
    assert not (tmp_path / "run").exists()  # no stray config.yaml


def test_a_crop_padding_one_side_only_is_kept():
    """mmseg pads an image smaller than the crop: taller than every image but not wider is accepted."""
    seg_labels.check_crop_size((64, 64), [(48, 64)], 1.0)
    seg_labels.check_crop_size((96, 128), [(48, 64)], 2.0)
    with pytest.raises(Exception, match="taller and wider"):
        seg_labels.check_crop_size((97, 129), [(48, 64)], 2.0)


def test_label_counts_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    root = frames(tmp_path / "d")
    paths = sorted((root / "ann").glob("*.png"))
    first = seg_labels.scan_labels(paths)
    assert sum(first[str(paths[0])]["values"].values()) == 48 * 64
    reads = []
    original = seg_labels.read_label
    monkeypatch.setattr(seg_labels, "read_label", lambda p: reads.append(p) or original(p))
    assert seg_labels.scan_labels(paths, first) == first and reads == []  # all from the cache
    label = np.zeros((48, 64), np.uint8)
    Image.fromarray(label).save(paths[1])  # changed: read again
    again = seg_labels.scan_labels(paths, first)
    assert reads == [paths[1]] and again[str(paths[1])]["values"] == {"0": 48 * 64}


def test_reduce_zero_label_is_applied_before_the_check():
    stats = {"a.png": {"values": {"0": 5, "1": 5, "4": 1, "255": 2}}}
    seg_labels.check_label_values(stats, 4, 255, reduce=True)  # 0 -> 255, 4 -> 3, 255 stays
    with pytest.raises(Exception, match="label value 4 is outside 0..3"):
        seg_labels.check_label_values(stats, 4, 255, reduce=False)
