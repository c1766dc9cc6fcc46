"""tools/reliability_cases.py: its file crafting is what it claims, its runner's verdicts are not vacuous, and a
fast subset of issue 11's cases passes (one-line errors, bounded memory); the whole --quick subset is slow."""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "reliability_cases", REPO / "tools" / "reliability_cases.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["reliability_cases"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


rc = _load_tool()
from reliability import craft, harness  # noqa: E402 - on sys.path once the runner is loaded

# Cases that fail before Paddle is imported: ~2 s each.
FAST = (
    "convert pdparams: 39-byte bytearray(2.3 GB) (issue)",
    "convert pdparams: BINBYTES8 declaring 1 TiB",
    "convert pth legacy: storage declares 8 GiB, holds 64 B",
    "convert /dev/stdin (closed)",
    "train --lr nan",
    "info --img-size 0",
)


@pytest.fixture
def ctx(tmp_path):
    return rc.Context(tmp_path, None, None, sys.executable)


def test_pickle_assembler_matches_the_standard_unpickler():
    obj = {"a": [1, -5, 2**40, "é", b"\x00\x01"], "b": (None, True, False), "c": {"d": ()}}
    assert pickle.loads(craft.pickle_bytes(obj)) == obj
    shared = craft.pickle_bytes({"x": craft.Memo(1, [1, 2]), "y": craft.Get(1)})
    loaded = pickle.loads(shared)
    assert loaded["x"] is loaded["y"]  # a memo reference, not a copy: what the alias cases rely on
    deep = pickle.loads(craft.deep_list_pickle(50))
    for _ in range(49):
        assert len(deep) == 1
        deep = deep[0]
    assert deep == []


def test_crafted_pth_files_are_what_torch_reads(tmp_path):
    """The .pth builders write real checkpoints: torch.load (the reference) reads the same values."""
    torch = pytest.importorskip("torch")
    values = np.arange(12, dtype=np.float32)
    pid_zip, pid_legacy = craft.storage_pid("0", 12), craft.storage_pid("0", 12, legacy=True)
    craft.write_zip_pth(
        tmp_path / "z.pth", {"model": {"w": craft.tensor(pid_zip, (3, 4))}}, {"0": values.tobytes()}
    )
    root = {"model": {"w": craft.tensor(pid_legacy, (2, 2), (1, 2), offset=4)}}
    craft.write_legacy_pth(tmp_path / "l.pth", root, [("0", 12, values.tobytes())])
    z = torch.load(tmp_path / "z.pth", weights_only=True)["model"]["w"].numpy()
    legacy = torch.load(tmp_path / "l.pth", weights_only=True)["model"]["w"].numpy()
    np.testing.assert_array_equal(z, values.reshape(3, 4))
    np.testing.assert_array_equal(legacy, np.array([[4, 6], [5, 7]], np.float32))


def test_crafted_safetensors_is_what_the_safetensors_package_reads(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    data = np.arange(6, dtype=np.float32)
    header = {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    craft.write_safetensors(tmp_path / "w.safetensors", header, data.tobytes())
    np.testing.assert_array_equal(st.load_file(tmp_path / "w.safetensors")["w"], data.reshape(2, 3))


def test_fast_cases_pass_with_one_line_errors(ctx):
    cases = [c for c in rc.all_cases() if c.name in FAST]
    assert len(cases) == len(FAST)
    results = rc.run_all(cases, ctx, jobs=2)
    bad = [f"{r.case.name}: {'; '.join(r.reasons)}" for r in results if r.status != "PASS"]
    assert not bad, bad
    for r in results:
        command = r.argv[0]
        assert r.exit == 2
        assert r.message.startswith(f"shunted {command}: error: ")
        assert "\n" not in r.message and "Traceback" not in r.stderr
        assert 0 < r.rss_mb < harness.CONVERT_RSS_MB
    by_name = {r.case.name: r for r in results}
    assert "b.pdparams" in by_name[FAST[0]].message
    assert "--lr" in by_name["train --lr nan"].message


ERROR_LINE = "import sys; print('shunted x: error: --img-size bad', file=sys.stderr); sys.exit(2)"


@pytest.mark.slow  # moved to the marked stage to keep the fast suite within its 5-minute budget
def test_runner_reports_failures(ctx):
    """Wrong expectations must FAIL with the reason: the verdicts are not vacuous (python -c stand-ins)."""
    wrong = [
        rc.Case("want exit 0", 6, ["-c", ERROR_LINE], exit=(0,)),
        rc.Case("want another name", 6, ["-c", ERROR_LINE], mentions=("no-such-flag",), error_command="x"),
        rc.Case("want a small RSS", 6, ["-c", "x = b'1' * (80 << 20)"], exit=(0,), max_rss_mb=50),
        rc.Case(
            "file must stay",
            1,
            ["-c", "import os; os.remove('x')"],
            harness.write_file("x", b"1"),
            exit=(0,),
            keep=("x",),
        ),
        rc.Case("hangs", 6, ["-c", "import time; time.sleep(30)"], exit=(0,), timeout=1),
        rc.Case("two lines", 6, ["-c", ERROR_LINE.replace("bad'", "bad\\nb'")], error_command="x"),
        rc.Case("passes", 6, ["-c", ERROR_LINE], mentions=("--img-size",), error_command="x", max_rss_mb=50),
    ]
    results = {r.case.name: r for r in rc.run_all(wrong, ctx, jobs=2)}
    assert results.pop("passes").status == "PASS"
    assert all(r.status == "FAIL" for r in results.values()), {k: r.status for k, r in results.items()}
    assert "expected 0" in results["want exit 0"].reasons[0]
    assert any("no-such-flag" in why for why in results["want another name"].reasons)
    assert any("peak RSS" in why for why in results["want a small RSS"].reasons)
    assert results["want a small RSS"].rss_mb > 80  # measured in the command, not in this (larger) process
    assert results["file must stay"].files == "✗"
    assert any("timed out" in why for why in results["hangs"].reasons)
    assert results["hangs"].seconds < 10
    assert any("1 more line" in why for why in results["two lines"].reasons)


def test_report_is_a_markdown_table(ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(rc, "versions", lambda python: "Paddle x, Pillow y")  # importing Paddle takes seconds
    case = rc.Case("one line", 6, ["-c", ERROR_LINE], mentions=("--img-size",), error_command="x")
    results = rc.run_all([case], ctx)
    text = rc.render(results, ["--quick"], rc.datetime.datetime(2026, 1, 1), 1.0, ctx, 1)
    rows = [line for line in text.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 1 and rows[0].count(" | ") == 8
    assert "1 passed, 0 failed" in text
    rc.write_atomic(tmp_path / "r.md", text)
    assert (tmp_path / "r.md").read_text() == text
    assert not list(tmp_path.glob(".r.md.*"))


@pytest.mark.slow
def test_quick_subset_passes(tmp_path, capsys):
    out = tmp_path / "reliability.md"
    code = rc.main(["--quick", "--output", str(out)])
    assert code == 0, capsys.readouterr().out
    text = out.read_text()
    assert "failed" in text and " 0 failed" in text
    json.dumps(text)  # plain text
    assert io.StringIO(text).readline().startswith("# Reliability")


def test_docs_table_lists_every_case():
    """docs/reliability.md is this script's output for the current case list (re-run the script after editing it)."""
    text = (REPO / "docs" / "reliability.md").read_text()
    assert "Generated by `python tools/reliability_cases.py" in text
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \| ", line)]
    names = [row.split(" | ")[1].replace("\\|", "|") for row in rows]
    expected = [rc._cell(c.name, 70) for c in rc.all_cases()]
    assert names == expected
    counts = re.search(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\.$", text, re.M)
    assert counts is not None
    passed, failed, skipped = (int(g or 0) for g in counts.groups())
    assert passed + failed + skipped == len(rows)
    assert sum(row.endswith("| PASS |") for row in rows) == passed
