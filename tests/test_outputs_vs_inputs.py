"""No command writes over what it reads (issue 11 item 1): an output that is an input, or two outputs that are one
file, is refused before any work with one line naming the user's paths (shunted/fileio.py ``check_outputs``).

Inputs here are small junk files: the refusal must come before anything is read, so a check that ran after the
work started would fail on the junk instead (and the junk would be overwritten).
"""

from __future__ import annotations

import os

import pytest

from shunted.cli import main

JUNK = b"not a checkpoint: must survive\n"


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pdparams").write_bytes(JUNK)
    for cls in ("cat", "dog"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        (tmp_path / "data" / cls / "0000.jpg").write_bytes(JUNK)
    return tmp_path


def eval_args(*extra):
    return [
        "eval",
        "--model",
        "shunted_t",
        "--weights",
        "w.pdparams",
        "--data",
        "data",
        "--no-progress",
        *extra,
    ]


def test_convert_sidecar_is_the_source(work, capsys):
    (work / "w.safetensors.json").write_bytes(JUNK)
    code, err = run_cli(["convert", "w.safetensors.json", "w.safetensors"], capsys)
    assert_refused(code, err, "w.safetensors.json", "SRC")
    assert (work / "w.safetensors.json").read_bytes() == JUNK
    assert not (work / "w.safetensors").exists()


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_convert_dst_is_a_link_to_the_source(work, capsys, link):
    (os.link if link == "hard" else os.symlink)(work / "w.pdparams", work / "b.pdparams")
    code, err = run_cli(["convert", "w.pdparams", "b.pdparams"], capsys)
    assert_refused(code, err, "b.pdparams", "w.pdparams")
    assert (work / "w.pdparams").read_bytes() == JUNK


def test_eval_output_is_the_weights(work, capsys):
    code, err = run_cli(eval_args("--output", "w.pdparams"), capsys)
    assert_refused(code, err, "--output w.pdparams", "--weights")
    assert (work / "w.pdparams").read_bytes() == JUNK


def test_eval_output_is_an_evaluated_image(work, capsys):
    code, err = run_cli(eval_args("--output", "data/cat/0000.jpg"), capsys)
    assert_refused(code, err, "data/cat/0000.jpg", "--data data")
    assert (work / "data" / "cat" / "0000.jpg").read_bytes() == JUNK


def test_eval_output_and_logits_are_one_file(work, capsys):
    code, err = run_cli(eval_args("--output", "r.json", "--save-logits", "./r.json"), capsys)
    assert_refused(code, err, "--output r.json", "--save-logits ./r.json")
    assert not (work / "r.json").exists()


def test_predict_output_is_the_input_image(work, capsys):
    argv = ["predict", "--model", "shunted_t", "--weights", "w.pdparams", "--output", "data/cat/0000.jpg"]
    code, err = run_cli([*argv, "data/cat/0000.jpg"], capsys)
    assert_refused(code, err, "--output data/cat/0000.jpg")
    assert (work / "data" / "cat" / "0000.jpg").read_bytes() == JUNK


def test_predict_output_would_be_an_image_in_an_input_folder(work, capsys):
    argv = [
        "predict",
        "--model",
        "shunted_t",
        "--weights",
        "w.pdparams",
        "--output",
        "data/dog/new.png",
        "data",
    ]
    code, err = run_cli(argv, capsys)
    assert_refused(code, err, "data/dog/new.png")
    assert not (work / "data" / "dog" / "new.png").exists()


def test_bench_json_is_the_weights(work, capsys):
    argv = ["bench", "--quick", "--backends", "dygraph", "--models", "shunted_t", "--weights", "w.pdparams"]
    code, err = run_cli([*argv, "--json", "w.pdparams"], capsys)
    assert_refused(code, err, "--json w.pdparams", "--weights")
    assert (work / "w.pdparams").read_bytes() == JUNK


def test_train_pretrained_is_a_file_the_run_writes(work, capsys):
    (work / "run").mkdir()
    (work / "run" / "last.pdparams").write_bytes(JUNK)
    argv = ["train", "--model", "shunted_t", "--data", "data", "--output", "run"]
    code, err = run_cli([*argv, "--pretrained", "run/last.pdparams"], capsys)
    assert_refused(code, err, "--pretrained run/last.pdparams")
    assert (work / "run" / "last.pdparams").read_bytes() == JUNK


def test_train_output_inside_the_data(work, capsys):
    code, err = run_cli(["train", "--model", "shunted_t", "--data", "data", "--output", "data/run"], capsys)
    assert_refused(code, err, "--data data", "metrics.png")
    assert not (work / "data" / "run").exists()


def test_check_outputs_allows_what_is_harmless(tmp_path):
    from shunted.fileio import check_outputs

    (tmp_path / "data").mkdir()
    (tmp_path / "w.pth").write_bytes(JUNK)
    (tmp_path / "r.json").write_bytes(b"{}")  # a previous result: replacing it is fine
    check_outputs(
        [("--output", tmp_path / "r.json"), ("--save-logits", tmp_path / "l.npy")],
        [("--weights", tmp_path / "w.pth")],
        [("--data", tmp_path / "data")],
    )
    # a result beside the images is not listed as data (not an image name)
    check_outputs([("--output", tmp_path / "data" / "r.json")], data=[("--data", tmp_path / "data")])
    check_outputs([("--output", None)], [("--weights", None)])


def test_check_outputs_sees_through_paths_and_links(tmp_path):
    from shunted.fileio import OutputError, check_outputs

    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="are the same file"):  # neither exists yet
        check_outputs(
            [("--output", tmp_path / "a.json"), ("--save-logits", tmp_path / "d" / ".." / "a.json")]
        )
    os.symlink(tmp_path / "target.npy", tmp_path / "dangling")
    with pytest.raises(OutputError, match="are the same file"):  # a dangling link writes its target
        check_outputs([("--output", tmp_path / "dangling"), ("--save-logits", tmp_path / "target.npy")])
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "w.pth").write_bytes(JUNK)
    with pytest.raises(OutputError, match="holds the input --weights"):
        check_outputs(
            [], [("--weights", tmp_path / "exp" / "w.pth")], folders=[("--output", tmp_path / "exp")]
        )
