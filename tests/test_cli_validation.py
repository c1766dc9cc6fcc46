"""Careless input on the command line: out-of-range flags, unwritable outputs and OS errors are one line, exit 2.

Flags are refused while the command line is parsed (shunted/commands/common.py ``type=`` functions), outputs are
checked before the work (shunted/fileio.py ``check_output_*``). The paths given to --weights / --data do not
exist: a check that ran after the work started would report them instead of the flag or output under test.
"""

from __future__ import annotations

import argparse
import errno
import json
import math

import pytest
from mounts import tmpfs_factory

from shunted.cli import main
from shunted.commands import common

MISSING = "/nonexistent/shunted-test"
EVAL = ["eval", "--model", "shunted_t", "--weights", f"{MISSING}/w.pth", "--data", MISSING]
PREDICT = ["predict", "--model", "shunted_t", "--weights", f"{MISSING}/w.pth", f"{MISSING}/a.jpg"]
TRAIN = ["train", "--model", "shunted_t", "--data", MISSING, "--output", f"{MISSING}/run"]
EXPORT = ["export", "--model", "shunted_t", "--format", "paddle", "--output", f"{MISSING}/exp"]
BENCH = ["bench", "--quick", "--backends", "dygraph", "--weights", f"{MISSING}/w.pth"]


@pytest.fixture
def tmpfs(tmp_path):
    with tmpfs_factory(tmp_path) as make:
        yield make


def run_cli(argv, capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``shunted ARGV`` run in-process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err and "usage:" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


BAD_FLAGS = [
    (["info", "--img-size", "0"], "--img-size"),
    (["info", "--img-size", "100"], "--img-size"),  # not a multiple of 32: the model cannot run it
    (["info", "--models", "shunted_x"], "--models"),
    (["bench", "--batch-sizes", "0"], "--batch-sizes"),
    (["bench", "--batch-sizes", "1", "-2"], "--batch-sizes"),
    (BENCH + ["--img-size", "0"], "--img-size"),
    (BENCH + ["--threads", "0"], "--threads"),
    (BENCH + ["--repeats", "0"], "--repeats"),
    (BENCH + ["--pause", "nan"], "--pause"),
    (["demo", "--batch-size", "0"], "--batch-size"),
    (["demo", "--workers", "-1"], "--workers"),
    (EVAL + ["--limit", "0"], "--limit"),
    (EVAL + ["--limit", "-1"], "--limit"),
    (EVAL + ["--img-size", "0"], "--img-size"),
    (EVAL + ["--img-size", "-64"], "--img-size"),
    (EVAL + ["--crop-pct", "0"], "--crop-pct"),
    (EVAL + ["--crop-pct", "87.5"], "--crop-pct"),  # a percentage where a fraction is meant
    (EVAL + ["--crop-pct", "nan"], "--crop-pct"),
    (EVAL + ["--resize-short", "0"], "--resize-short"),
    (EVAL + ["--batch-size", "0"], "--batch-size"),
    (EVAL + ["--workers", "-1"], "--workers"),
    (EVAL + ["--threads", "0"], "--threads"),
    (EVAL + ["--num-classes", "0"], "--num-classes"),
    (PREDICT + ["--topk", "0"], "--topk"),
    (PREDICT + ["--threads", "-4"], "--threads"),
    (PREDICT + ["--batch-size", "0"], "--batch-size"),
    (TRAIN + ["--lr", "nan"], "--lr"),
    (TRAIN + ["--lr", "inf"], "--lr"),
    (TRAIN + ["--lr", "0"], "--lr"),
    (TRAIN + ["--lr", "-1e-3"], "--lr"),
    (TRAIN + ["--epochs", "0"], "--epochs"),
    (TRAIN + ["--epochs", "1.5"], "--epochs"),
    (TRAIN + ["--batch-size", "0"], "--batch-size"),
    (TRAIN + ["--workers", "-1"], "--workers"),
    (TRAIN + ["--img-size", "100"], "--img-size"),
    (TRAIN + ["--max-steps", "0"], "--max-steps"),
    (TRAIN + ["--max-steps", "-3"], "--max-steps"),
    (EXPORT + ["--img-size", "0"], "--img-size"),
    (EXPORT + ["--threads", "0"], "--threads"),
]


@pytest.mark.parametrize(("argv", "flag"), BAD_FLAGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_FLAGS])
def test_out_of_range_flags_are_one_line_before_any_work(argv, flag, capsys):
    line = assert_one_line(*run_cli(argv, capsys), f"shunted {argv[0]}: error:", flag)
    assert MISSING not in line  # refused while parsing, before any file was looked at


def test_type_functions_accept_the_valid_range():
    assert common.positive_int("8") == 8 and common.nonnegative_int("0") == 0
    assert common.image_size("32") == 32 and common.image_size("224") == 224
    assert common.fraction("0.875") == 0.875 and common.fraction("1") == 1.0
    assert common.positive_float("1e-4") == 1e-4 and common.nonnegative_float("0") == 0.0
    for func, text in [
        (common.positive_int, "0"),
        (common.positive_int, "x"),
        (common.nonnegative_int, "-1"),
        (common.image_size, "48"),
        (common.image_size, "0"),
        (common.fraction, "0"),
        (common.fraction, "1.01"),
        (common.fraction, "inf"),
        (common.positive_float, "-inf"),
        (common.positive_float, "nan"),
        (common.nonnegative_float, "-0.1"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            func(text)


def test_unknown_flags_are_one_line_without_the_usage_block(capsys):
    assert_one_line(*run_cli(["eval", "--limt", "3"], capsys), "shunted eval: error:", "--limt")


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("the user's file")
    return path


def output_cases(tmp_path, a_file):
    under_file = str(a_file / "sub" / "r.json")
    return [
        (EVAL + ["--output", under_file], under_file, "is a file, not a folder"),
        (EVAL + ["--save-logits", under_file], under_file, "is a file, not a folder"),
        (EVAL + ["--output", str(tmp_path)], str(tmp_path), "is a folder"),
        (PREDICT + ["--output", under_file], under_file, "is a file, not a folder"),
        (BENCH + ["--json", under_file], under_file, "is a file, not a folder"),
        (TRAIN[:-1] + [str(a_file)], str(a_file), "not a folder"),
        (["demo", "--output-dir", str(a_file)], str(a_file), "not a folder"),
        (EXPORT[:-1] + [str(a_file / "exp")], str(a_file / "exp"), "is a file, not a folder"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_unwritable_outputs_are_refused_before_the_work(case, tmp_path, a_file, capsys):
    argv, path, reason = output_cases(tmp_path, a_file)[case]
    line = assert_one_line(*run_cli(argv, capsys), f"shunted {argv[0]}: error: {path}", reason)
    assert ".tmp" not in line and MISSING not in line
    assert a_file.read_text() == "the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_read_only_and_full_locations_are_refused_before_the_work(tmpfs, capsys):
    read_only = tmpfs(read_only=True)
    target = read_only / "r.json"
    assert_one_line(*run_cli(EVAL + ["--output", str(target)], capsys), str(target), "Read-only file system")
    nested = read_only / "new" / "l.npy"  # a missing parent that cannot be created
    assert_one_line(*run_cli(EVAL + ["--save-logits", str(nested)], capsys), str(nested), "Read-only")
    full = tmpfs(fill=True)
    target = full / "r.json"
    assert_one_line(*run_cli(EVAL + ["--output", str(target)], capsys), str(target), "no space left")


def test_any_os_error_is_one_line_naming_its_file(monkeypatch, capsys):
    import shunted.commands.info as info

    def fail(args):
        raise OSError(errno.EIO, "Input/output error", "/data/disk/file.bin")

    monkeypatch.setattr(info, "run", fail)
    assert_one_line(
        *run_cli(["info"], capsys), "shunted info: error: /data/disk/file.bin: Input/output error"
    )


def test_an_evaluation_that_evaluated_nothing_is_an_error_not_nan(tmp_path):
    from shunted.data.datasets import ImageDataset, list_samples
    from shunted.data.transforms import EvalTransform
    from shunted.engine.evaluate import EvalRun, run_evaluation
    from shunted.errors import DataError

    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (data / name).write_bytes(b"not an image")
    (tmp_path / "labels.txt").write_text("a.jpg 0\nb.jpg 1\n")
    samples = list_samples(data, labels=tmp_path / "labels.txt", num_classes=10)
    dataset = ImageDataset(samples, EvalTransform(img_size=32), on_error="mark")
    out = tmp_path / "r.json"
    with pytest.raises(DataError, match="no image could be evaluated"):
        run_evaluation(
            lambda x: pytest.fail("no image should reach the model"),
            dataset,
            10,
            {"model": "shunted_t"},
            EvalRun(workers=0, skip_bad=True, output=out, progress=False),
        )
    assert not out.exists()


def test_json_outputs_never_hold_nan(tmp_path):
    from shunted.fileio import write_json_atomic

    path = tmp_path / "r.json"
    write_json_atomic(path, {"top1": float("nan"), "rows": [1.5, float("inf"), -math.inf], "n": 0})

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "top1": None,
        "rows": [1.5, None, None],
        "n": 0,
    }
