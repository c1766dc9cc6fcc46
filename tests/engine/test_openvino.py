"""The OpenVINO backends, checked in a process of their own (see tests/engine/openvino_cases.py for why)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from exporters import needs_onnx_exporter


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_openvino_backends_in_their_own_process(repo_root):
    pytest.importorskip("openvino")
    needs_onnx_exporter()
    cases = repo_root / "tests" / "engine" / "openvino_cases.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    summary = done.stdout.strip().splitlines()[-1]
    if " passed" not in summary:  # e.g. ../shared absent: the cases skip with their reason
        pytest.skip(f"every OpenVINO case skipped ({summary}); reasons: {done.stdout[-600:]}")
    assert "failed" not in summary
