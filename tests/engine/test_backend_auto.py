"""``--backend auto``, the default of eval / predict / seg-eval / seg-predict: the fastest runtime whose parity
the tests check, passed over with one line when missing or when its export fails (shunted/engine/session.py).

The choice itself is checked here with stand-in predictors (no export); the real exports under ``auto`` (top-1
counts equal dygraph's, the warm cache) are in tests/engine/openvino_cases.py."""

from __future__ import annotations

import argparse

import pytest

from shunted.cli import build_parser
from shunted.engine import session
from shunted.engine.export import ExportError


@pytest.fixture
def stand_ins(monkeypatch):
    """Every runtime installed and opening to a stand-in that returns its own name; ``fail`` makes one fail."""
    opened: list[str] = []
    fail: dict[str, Exception] = {}
    missing: dict[str, str] = {}

    def fake_predictor(backend, model, threads, img_size, margin, cache):
        opened.append(backend)
        if backend in fail:
            raise fail[backend]
        return (lambda x, b=backend: b), (True if backend != "dygraph" else None)

    monkeypatch.setattr(session, "_model_predictor", fake_predictor)
    monkeypatch.setattr(session, "missing_for", lambda b: missing.get(b))
    return opened, fail, missing


def _open(backend="auto"):
    lines: list[str] = []
    used, predict, cached = session.open_backend(backend, object(), 2, 64, warn=lines.append)
    return used, predict, lines


def test_auto_takes_openvino_fp32_first_and_says_nothing(stand_ins):
    opened, _, _ = stand_ins
    used, predict, lines = _open()
    assert used == "openvino" and predict(None) == "openvino" and opened == ["openvino"] and lines == []


def test_auto_never_picks_bf16():
    assert not any(b.endswith("_bf16") for b in session.AUTO_ORDER)
    assert session.AUTO_ORDER == ("openvino", "onnxruntime", "inference", "dygraph")


def test_auto_passes_over_missing_and_failing_runtimes_with_one_line(stand_ins):
    """openvino not installed, the ONNX Runtime export fails its parity check: Paddle Inference, and one line
    naming both reasons. Mutation: an auto that stops at the first installed runtime raises the parity error."""
    opened, fail, missing = stand_ins
    missing["openvino"] = "openvino is not installed (pip install openvino)"
    fail["onnxruntime"] = ExportError("onnxruntime export: output 0 differs from dygraph by rel err 3.1e-02")
    used, predict, lines = _open()
    assert used == "inference" and predict(None) == "inference"
    assert opened == ["onnxruntime", "inference"]
    assert len(lines) == 1
    assert lines[0].startswith("--backend auto: using inference (openvino: openvino is not installed")
    assert "onnxruntime: onnxruntime export: output 0 differs from dygraph by rel err 3.1e-02" in lines[0]


def test_auto_ends_at_dygraph(stand_ins):
    opened, fail, missing = stand_ins
    missing.update(openvino="x missing", onnxruntime="y missing")
    fail["inference"] = RuntimeError("predictor creation failed\nsecond line")
    used, _, lines = _open()
    assert used == "dygraph" and lines == [
        "--backend auto: using dygraph (openvino: x missing; onnxruntime: y missing; "
        "inference: predictor creation failed)"
    ]


def test_an_explicit_backend_is_never_replaced(stand_ins):
    _, fail, _ = stand_ins
    fail["openvino"] = ExportError("parity")
    with pytest.raises(ExportError, match="parity"):
        _open("openvino")


def test_resolve_backend_names_the_runtime_before_the_work(stand_ins):
    _, _, missing = stand_ins
    assert session.resolve_backend("auto") == "openvino"
    missing["openvino"] = "not installed"
    assert session.resolve_backend("auto") == "onnxruntime"
    assert session.resolve_backend("inference_bf16") == "inference_bf16"


@pytest.mark.parametrize("command", ["eval", "predict", "seg-eval", "seg-predict"])
def test_auto_and_the_cache_are_the_defaults_of_the_commands(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    defaults = {a.dest: a.default for a in sub._actions}
    assert defaults["backend"] == "auto" and defaults["no_cache"] is False
    choices = next(a.choices for a in sub._actions if a.dest == "backend")
    assert tuple(choices) == session.CHOICES


def test_the_runtime_line_names_what_auto_resolved_to(stand_ins):
    from shunted.commands.common import runtime_banner

    _, _, missing = stand_ins
    missing["openvino"] = "not installed"
    line = runtime_banner(argparse.Namespace(backend="auto"), 2)
    assert line.startswith("runtime: onnxruntime (ONNX Runtime on an ONNX export, float32")
    assert line.endswith("(chosen by --backend auto)")
    assert runtime_banner(argparse.Namespace(backend="dygraph"), 2).startswith("runtime: dygraph (")


def test_an_unwritable_cache_falls_back_to_a_temporary_export(monkeypatch, capsys):
    """A read-only or full cache folder costs the cache, not the run: one line, then a temporary export."""
    built, made = [], []

    def no_cache(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/home/u/.cache/shunted/exports")

    monkeypatch.setattr(session, "cached_folder", no_cache)
    monkeypatch.setattr(session, "export_key", lambda *a: {})
    monkeypatch.setattr(session, "missing_for", lambda b: None)
    monkeypatch.setattr(
        session, "_build_export", lambda model, fmt, size, checker, threads, folder: built.append(fmt)
    )
    monkeypatch.setattr(
        session, "make_predictor", lambda backend, folder, *a, **k: made.append(backend) or "p"
    )
    assert session.model_predictor("onnxruntime", object(), 2, 64) == "p"
    assert built == ["onnx"] and made == ["onnxruntime"]
    err = capsys.readouterr().err
    assert (
        "cannot use the start-up cache" in err and "Permission denied" in err and len(err.splitlines()) == 1
    )
