"""``shunted demo``: runs end to end and agrees with the official code; its bundled data is what it claims."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from shunted.cli import main

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO / "shunted" / "assets" / "cifar10-demo"
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
EXPECTED = json.loads((SUBSET / "expected.json").read_text())


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_demo_runs_and_matches_the_official_result(tmp_path, capsys):
    assert main(["demo", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["n"] == EXPECTED["n_images"] == 1000
    assert result["top1"]["correct"] == EXPECTED["top1_correct"]
    assert (
        abs(result["top5"]["correct"] - EXPECTED["top5_correct"]) <= 2
    )  # near-ties in top-5 (SPEC demo notes)
    assert "official code (PyTorch)" in out and "top-1 matches the official code" in out
    assert (tmp_path / "shunted_t_cifar10.pdparams").is_file()
    for example in ("airplane/0000.jpg", "cat/0000.jpg", "ship/0000.jpg"):
        assert example in out


def test_bundled_subset_is_the_first_100_per_class(shared_dir):
    test_dir = shared_dir / "data" / "cifar10" / "test"
    classes = sorted(p.name for p in SUBSET.iterdir() if p.is_dir())
    assert classes == EXPECTED["classes"] == sorted(p.name for p in test_dir.iterdir() if p.is_dir())
    for c in classes:
        ours = sorted(p.name for p in (SUBSET / c).iterdir())
        assert ours == sorted(p.name for p in (test_dir / c).iterdir())[:100]
        for name in ours:
            assert (SUBSET / c / name).read_bytes() == (test_dir / c / name).read_bytes()


def test_expected_json_describes_the_bundled_files(shared_dir):
    assert EXPECTED["checkpoint_sha256"] == hashlib.sha256(CKPT.read_bytes()).hexdigest()
    assert CKPT.read_bytes() == (shared_dir / "demo" / "ckpt_T_cifar10_fp16.pth").read_bytes()
    assert EXPECTED["n_images"] == sum(1 for _ in SUBSET.glob("*/*.jpg"))


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_expected_json_is_what_the_tool_recomputes(tmp_path):
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "compute_demo_reference", REPO / "tools" / "compute_demo_reference.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--out", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    for key in ("n_images", "top1_correct", "top5_correct", "checkpoint_sha256", "classes"):
        assert again[key] == EXPECTED[key], key
