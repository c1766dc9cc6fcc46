"""The benchmark scripts behind benchmarks/README.md run end to end in their quick modes (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _run(repo_root, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, *args], cwd=repo_root, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_bench_cpu_quick_writes_every_backend(repo_root, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    out = tmp_path / "quick.json"
    done = _run(repo_root, "benchmarks/bench_cpu.py", "--quick", "--output", str(out))
    records = json.loads(out.read_text())
    backends = {r["backend"] for r in records}
    assert {"dygraph", "inference", "inference_bf16", "onnxruntime", "openvino", "openvino_bf16"} <= backends
    assert all(r["img_per_s"] > 0 for r in records)
    assert "| shunted_t | 1 |" in done.stdout  # the README table


@pytest.mark.slow  # moved to the marked stage to keep the fast suite within its 5-minute budget
def test_train_step_quick_times_paddle(repo_root):
    done = _run(repo_root, "benchmarks/train_step.py", "--quick", "--variants", "paddle")
    assert "paddle" in done.stdout and "img/s" in done.stdout


@pytest.mark.slow  # two seg-predict runs per size in child processes
def test_seg_memory_quick_prints_the_readme_table(repo_root):
    done = _run(repo_root, "benchmarks/seg_memory.py", "--quick")
    assert "| image | t whole (est.) | t slide |" in done.stdout
    assert "| 320×240 |" in done.stdout and "fails" not in done.stdout


@pytest.mark.slow  # integration (two training subprocesses): the marked stage, make test-slow
def test_det_bccd_and_det_memory_run_end_to_end(repo_root, shared_dir, tmp_path):
    if not (shared_dir / "data" / "bccd").is_dir():
        pytest.skip("../shared/data/bccd (the real BCCD data) is not present")
    out = tmp_path / "out"
    argv = [
        "--work",
        str(tmp_path / "work"),
        "--output",
        str(out),
        "--img-scale",
        "128",
        "96",
        "--epochs",
        "1",
    ]
    argv += [
        "--steps",
        "1",
        "--val-images",
        "2",
        "--speed-images",
        "1",
        "--eval-interval",
        "1",
        "--warmup",
        "1",
    ]
    done = _run(repo_root, "benchmarks/det_bccd.py", *argv)
    result = json.loads((out / "det_bccd.json").read_text())
    assert set(result["runs"]) == {"pretrained", "scratch"} and result["speed"]["max_rel_diff_outputs"] < 1e-4
    assert (out / "predictions.png").is_file() and "| CIFAR-10 pretrained |" in done.stdout
    done = _run(
        repo_root, "benchmarks/det_memory.py", "--sizes", "128x96", "--json", str(tmp_path / "m.json")
    )
    rows = json.loads((tmp_path / "m.json").read_text())
    assert [r["recompute"] for r in rows] == [False, True] and all(
        r["peak_mb"] > r["before_mb"] for r in rows
    )


@pytest.mark.slow  # starts shunted serve and loads it for a few seconds
def test_serve_load_quick_reports_every_level(repo_root, tmp_path):
    pytest.importorskip("fastapi")
    out = tmp_path / "serve.json"
    done = _run(
        repo_root, "benchmarks/serve_load.py", "--quick", "--backend", "dygraph", "--output", str(out)
    )
    record = json.loads(out.read_text())
    levels = record["levels"]
    assert [r["clients"] for r in levels] == [1, 4, 4, 4 + 2 * 8 + 8]  # --quick: --max-queue 4
    assert all(r["ok"] > 0 and not r["errors"] for r in levels[:3])
    assert set(levels[2]["bad_answers"]) == {"400"}
    assert set(levels[3]["errors"]) == {"503"} and levels[3]["ok"] > 0  # over the queue: 503s only
    assert record["offline_batch8_img_per_s"] > 0 and "| 4 + slow + bad |" in done.stdout
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow  # several `shunted eval` processes and in-process loops: the marked stage
def test_eval_speed_budget_and_decode_workers_quick(repo_root, shared_dir):
    """Issue 22's two measuring scripts in their quick modes: eval_speed prints the goal table and the budget
    (bound) table; decode_workers runs threads, processes and serial decoding to equal top-1 counts (it stops
    when they differ) and prints its table."""
    pytest.importorskip("openvino")
    data = shared_dir / "data" / "cifar10" / "test"
    if not data.is_dir():
        pytest.skip("../shared/data/cifar10 (the real CIFAR-10 test split) is not present")
    common = ["--data", str(data), "--images", "24", "--img-size", "64", "--batch-size", "8"]
    done = _run(
        repo_root, "benchmarks/eval_speed.py", *common, "--backends", "openvino", "--workers", "2",
        "--rounds", "1", "--calls", "2", "--passes", "1",
    )  # fmt: skip
    assert "| openvino | 2 |" in done.stdout
    budget = [line for line in done.stdout.splitlines() if line.startswith("| openvino | ") and "+" in line]
    assert len(budget) == 1 and budget[0].rstrip().endswith("% |")  # the bound row: ... | loop / bound |
    done = _run(repo_root, "benchmarks/decode_workers.py", *common, "--backend", "openvino", "--rounds", "1")
    for variant in ("threads (2)", "processes (2)", "serial (0)"):
        assert f"| {variant} |" in done.stdout
