"""Absurd sizes, depths and counts are refused in one line before any work (issue 11: memory bounded, no hang).

Flags: the argparse type functions of shunted/commands/common.py; config keys: shunted/config_schema.py and
shunted/config.py (the same bounds, so ``-c`` / ``-o`` cannot bypass them); safetensors ranks:
shunted/convert/safetensors_io.py; loader failures: shunted/engine/evaluate.py.
"""

from __future__ import annotations

import argparse
import json
import struct
import threading

import numpy as np
import pytest
from PIL import Image

from shunted import config_schema
from shunted.cli import build_parser, main
from shunted.commands import common
from shunted.config import ConfigError, eval_settings, load_config
from shunted.errors import DataError

MISSING = "/nonexistent/shunted-test"  # never reached: the flags are refused first
EVAL = ["eval", "--model", "shunted_t", "--weights", f"{MISSING}/w.pth", "--data", MISSING]
TRAIN = ["train", "--model", "shunted_t", "--data", MISSING, "--output", f"{MISSING}/run"]
EXPORT = ["export", "--model", "shunted_t", "--format", "paddle", "--output", f"{MISSING}/exp"]
BENCH = ["bench", "--quick", "--backends", "dygraph", "--batch-sizes", "1"]


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def one_line(code, err, *needles) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


HUGE = [
    (EVAL + ["--img-size", "32000"], "--img-size"),
    (EVAL + ["--img-size", "2048"], "--img-size"),
    (EVAL + ["--crop-pct", "1e-6"], "--crop-pct"),
    (EVAL + ["--crop-pct", "0.2"], "--crop-pct"),
    (EVAL + ["--resize-short", "1000000000"], "--resize-short"),
    (EXPORT + ["--img-size", "32000"], "--img-size"),
    (BENCH + ["--img-size", "32000"], "--img-size"),
    (TRAIN + ["--img-size", "32000"], "--img-size"),
    (TRAIN + ["--num-classes", "1"], "--num-classes"),
]


@pytest.mark.parametrize(("argv", "flag"), HUGE, ids=[" ".join(a[:1] + a[-2:]) for a, _ in HUGE])
def test_absurd_flags_are_refused_while_parsing(argv, flag, capsys):
    # parse only (what shunted.cli.main does first): a value let through must not start the work it would exhaust
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_known_args(argv)
    one_line(exc.value.code, capsys.readouterr().err, f"shunted {argv[0]}: error:", f"argument {flag}")


def test_bounds_admit_the_usual_values_and_agree_with_the_schema():
    assert common.image_size("1024") == 1024 and common.image_size("384") == 384
    assert common.crop_pct("0.875") == 0.875 and common.crop_pct("0.25") == 0.25 and common.crop_pct("1") == 1
    assert common.resize_short("4096") == 4096 and common.num_classes("2") == 2
    # the largest crop at the smallest crop_pct is exactly the largest --resize-short
    assert int(common.MAX_IMAGE_SIZE / common.MIN_CROP_PCT) == common.MAX_RESIZE_SHORT
    for name in ("STRIDE", "MAX_IMAGE_SIZE", "MAX_RESIZE_SHORT"):
        assert getattr(config_schema, name) == getattr(common, name), name
    for func, text in [
        (common.image_size, "1056"),
        (common.crop_pct, "0.24"),
        (common.crop_pct, "nan"),
        (common.resize_short, "4097"),
        (common.resize_short, "0"),
        (common.num_classes, "1"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            func(text)


@pytest.mark.parametrize("value", [48, 0, 2048, 100])
def test_train_img_size_key_has_the_flag_bounds(value):
    with pytest.raises(ConfigError, match=r"DataLoader\.Train\.transform\.img_size"):
        load_config(None, [f"DataLoader.Train.transform.img_size={value}"])
    load_config(None, ["DataLoader.Train.transform.img_size=64"])


@pytest.mark.parametrize(
    ("op", "needle"),
    [
        ("{CropImage: {size: 48}}", "CropImage.size: 48 is not a multiple of 32"),
        ("{CropImage: {size: 32000}}", "CropImage.size: 32000 is too large"),
        ("{ResizeImage: {resize_short: 1000000000}}", "ResizeImage.resize_short: 1000000000 is too large"),
    ],
)
def test_eval_op_sizes_have_the_flag_bounds(op, needle):
    cfg = load_config(None, [f"DataLoader.Eval.dataset.transform_ops=[{op}]"])
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        eval_settings(cfg)


def test_deep_yaml_is_one_line_not_a_recursion_error(tmp_path, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text("Global: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: nested more than 50 levels"):
        load_config(deep)
    with pytest.raises(ConfigError, match="nested more than"):
        load_config(None, ["Global.seed=" + "[" * 100_000 + "]" * 100_000])
    ok = tmp_path / "ok.yaml"
    ok.write_text("Global: {seed: 3}\n")
    assert load_config(ok)["Global"]["seed"] == 3
    code, err, _ = run_cli(EVAL + ["-c", str(deep)], capsys)
    one_line(code, err, "deep.yaml", "nested")


def test_safetensors_rank_is_bounded(tmp_path, capsys):
    path = tmp_path / "shapes.safetensors"
    header = json.dumps({"head.bias": {"dtype": "F32", "shape": [1] * 500_001, "data_offsets": [0, 4]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 4)
    code, err, _ = run_cli(["convert", str(path), str(tmp_path / "out.pdparams")], capsys)
    one_line(code, err, "shapes.safetensors", "500001 dimensions")
    assert not (tmp_path / "out.pdparams").exists()


def test_bench_refuses_missing_weights_before_timing(tmp_path, capsys):
    code, err, out = run_cli(
        BENCH + ["--models", "shunted_t", "--weights", str(tmp_path / "nope.pdparams")], capsys
    )
    one_line(code, err, "nope.pdparams")
    assert "timing" not in out


class _Exhausting:
    """An EvalTransform stand-in whose resize runs out of memory (as PIL does at an absurd size)."""

    output_shape = (3, 32, 32)

    def __call__(self, img):
        raise MemoryError


@pytest.mark.parametrize("workers", [0, 1])
def test_a_loader_memory_error_is_one_line_and_never_hangs(tmp_path, workers):
    from shunted.data.datasets import ImageDataset, list_samples
    from shunted.engine.evaluate import EvalRun, evaluate

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (40, 40)).save(tmp_path / c / "x.png")
    dataset = ImageDataset(list_samples(tmp_path), _Exhausting(), on_error="mark")
    result: list = []

    def run():
        try:
            evaluate(
                dataset,
                lambda x: np.zeros((len(x), 2)),
                2,
                EvalRun(batch_size=2, workers=workers, progress=False),
            )
        except BaseException as exc:  # noqa: BLE001 — inspected below
            result.append(exc)

    if workers:  # worker processes need the main thread (Paddle installs signal handlers)
        run()
    else:  # Paddle's in-process loader thread: a hang here must fail the test, not stall the suite
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "evaluate() hung on a loader exception"
    assert len(result) == 1 and isinstance(result[0], DataError), result
    assert "out of memory" in str(result[0]) and "x.png" in str(result[0])


def test_threads_are_bounded_by_the_cores(monkeypatch, capsys):
    """--threads 1000 ran 9x slower (issue 20 #6): at most twice the cores, a warning past the core count."""
    monkeypatch.setattr(common, "cores", lambda: 4)
    assert common.threads("4") == 4 and capsys.readouterr().err == ""
    assert common.threads("8") == 8
    assert "--threads 8 is more than the 4 cores" in capsys.readouterr().err
    with pytest.raises(argparse.ArgumentTypeError, match="9 is more than twice the 4 cores"):
        common.threads("9")
    with pytest.raises(SystemExit):
        build_parser().parse_known_args(EVAL + ["--threads", "1000"])
    one_line(2, capsys.readouterr().err, "shunted eval: error: argument --threads: 1000 is more than twice")


def test_seg_eval_and_seg_train_refuse_an_ignore_index_that_is_a_class():
    """seg-eval took --ignore-index 3 (a real class) silently: class 3's pixels vanished, mIoU 7.63 instead of
    11.57 (issue 20 #7). One rule for both commands: engine/seg/config.py check_ignore_index."""
    import inspect

    from shunted.engine.seg import config as seg_config
    from shunted.engine.seg import evaluate as seg_evaluate

    with pytest.raises(ConfigError, match="--ignore-index 3: is one of the 11 classes"):
        seg_config.check_ignore_index(3, 11)
    seg_config.check_ignore_index(11, 11)
    seg_config.check_ignore_index(255, 11)
    assert "check_ignore_index(cfg.ignore_index, num_classes)" in inspect.getsource(
        seg_evaluate.evaluate_seg_checkpoint
    )
