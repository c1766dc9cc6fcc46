"""Skipping where the ONNX export cannot run: the tests of ONNX-based runtimes need an exporter, not a given one."""

from __future__ import annotations

import pytest


def needs_onnx_exporter(module: bool = False) -> None:
    """Skip (the module, with ``module``) unless an ONNX exporter is installed: paddle2onnx (wheels up to Python
    3.12) or the p2o program (after), as ``shunted/engine/export.py:onnx_exporter`` picks."""
    from shunted.engine.export import onnx_exporter

    if onnx_exporter() is None:
        pytest.skip(
            "no ONNX exporter: paddle2onnx (Python <= 3.12) or p2o (Python >= 3.13), the onnx extra",
            allow_module_level=module,
        )
