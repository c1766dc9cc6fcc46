"""Wall time and peak memory of `shunted convert` on a shunted_b-sized checkpoint, next to torch.load + numpy.

    python benchmarks/convert.py            # shunted_b (≈ 160 MB float32 .pth), 3 runs each, medians
    python benchmarks/convert.py --quick    # shunted_t (≈ 46 MB), 1 run (for CI)

The checkpoint is written in a temporary folder with the tests' PyTorch reference (official layout,
``torch.save({'model': state_dict})``); without torch it is written by the package's own torch-free writer and the
torch row is left out. Every measurement runs in a fresh process that reports its own peak RSS (ru_maxrss);
"net" subtracts the peak RSS of a process that only does the same imports. Time is for the work itself
(imports excluded); the whole process's wall time is shown too. Targets (issue 3): ≤ 3 s, net peak RSS ≤ 2.5×
the file size.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Each snippet runs in a fresh interpreter; SETUP is timed as "imports", WORK as the measured operation.
SHUNTED_SETUP = "import numpy as np\nfrom shunted.convert import convert_file"
SHUNTED_WORK = "convert_file(SRC, DST)"
TORCH_SETUP = (
    "import pickle\nimport numpy as np\nimport torch\nfrom shunted.convert.mapping import torch_to_paddle"
)
TORCH_WORK = (
    "state = torch.load(SRC, weights_only=True)['model']\n"
    "state = torch_to_paddle({k: v.numpy() for k, v in state.items()})\n"
    "with open(DST, 'wb') as fh:\n    pickle.dump(state, fh, protocol=5)"
)
CHILD = """
import json, resource, sys, time
SRC, DST = sys.argv[1], sys.argv[2]
{setup}
t0 = time.perf_counter()
if sys.argv[3] == "work":
{work}
elapsed = time.perf_counter() - t0
print(json.dumps({{"seconds": elapsed, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def run_child(setup: str, work: str, src: Path, dst: Path, mode: str) -> dict:
    code = CHILD.format(setup=setup, work=_indent(work))
    env = dict(os.environ, OMP_NUM_THREADS="2", GLOG_minloglevel="2")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(src), str(dst), mode], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    if dst.exists():
        dst.unlink()
    Path(str(dst) + ".json").unlink(missing_ok=True)
    return result


MAKE_CHECKPOINT = """
import sys
from pathlib import Path
variant, path, repo = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
try:
    import torch
    from shunted.runtime import torch_reference
    torch.save({"model": torch_reference.build(variant, num_classes=1000).state_dict()}, path)
    print(f"torch {torch.__version__} (shunted/runtime/torch_reference.py)")
except ImportError:
    from shunted.convert.mapping import paddle_to_torch
    from shunted.convert.torch_writer import write_checkpoint
    from shunted.factory import create_model
    from shunted.models.weights import state_dict_numpy
    write_checkpoint(path, paddle_to_torch(state_dict_numpy(create_model(variant))))
    print("shunted's torch-free writer (torch not installed)")
"""


def make_checkpoint(variant: str, path: Path) -> str:
    """Write a randomly initialised official-layout checkpoint (in a child process); returns what wrote it.

    The benchmark's own process stays small: on Linux a child's ru_maxrss starts from its parent's peak
    (it is carried over at exec), so a parent that had built a model would inflate every measurement.
    """
    proc = subprocess.run(
        [sys.executable, "-c", MAKE_CHECKPOINT, variant, str(path), str(REPO)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"could not write the checkpoint:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def measure(name: str, setup: str, work: str, src: Path, dst: Path, repeats: int) -> dict:
    base = [run_child(setup, work, src, dst, "imports")["maxrss_kb"] for _ in range(repeats)]
    runs = [run_child(setup, work, src, dst, "work") for _ in range(repeats)]
    raw = statistics.median(r["maxrss_kb"] for r in runs) / 1024
    baseline = statistics.median(base) / 1024
    return {
        "name": name,
        "seconds": statistics.median(r["seconds"] for r in runs),
        "process_seconds": statistics.median(r["process_seconds"] for r in runs),
        "raw_mb": raw,
        "baseline_mb": baseline,
        "net_mb": raw - baseline,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shunted_t and a single run (for CI)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3, quick 1)")
    args = parser.parse_args(argv)
    variant = "shunted_t" if args.quick else "shunted_b"
    repeats = args.repeats or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="shunted-bench-") as tmp:
        src, dst = Path(tmp) / f"ckpt_{variant}.pth", Path(tmp) / "out.pdparams"
        writer = make_checkpoint(variant, src)
        size_mb = src.stat().st_size / 2**20
        rows = [measure("shunted convert (no torch)", SHUNTED_SETUP, SHUNTED_WORK, src, dst, repeats)]
        if importlib.util.find_spec("torch") is not None:
            rows.append(measure("torch.load + numpy + pickle", TORCH_SETUP, TORCH_WORK, src, dst, repeats))
    print(f"checkpoint: {variant}, {size_mb:.1f} MiB, written by {writer}; median of {repeats} run(s)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    header = (
        f"| {'method':<28} | time (s) | process (s) | peak RSS raw (MiB) | import-only (MiB) | net (MiB) "
        "| net / file |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(
            f"| {r['name']:<28} | {r['seconds']:8.2f} | {r['process_seconds']:11.2f} | {r['raw_mb']:18.0f} "
            f"| {r['baseline_mb']:17.0f} | {r['net_mb']:9.0f} | {r['net_mb'] / size_mb:10.2f} |"
        )
    ours = rows[0]
    ok_time, ok_mem = ours["seconds"] <= 3.0, ours["net_mb"] <= 2.5 * size_mb
    print(
        f"targets: time ≤ 3 s {'met' if ok_time else 'MISSED'}; "
        f"net peak RSS ≤ 2.5 × file size {'met' if ok_mem else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
