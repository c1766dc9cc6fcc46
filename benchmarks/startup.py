"""Start-up of a ``shunted`` process: cold start-up cache, warm cache, ``--no-cache``, dygraph (issue 22).

Each case runs ``shunted predict`` on one image (start-up is nearly all of it) as a process of its own,
``--runs`` times in rotating order; the table gives the median wall time and the median CPU time (user + sys of
the child: less sensitive to a loaded machine than wall time), and the load average during the run. "cold" starts
each run with an empty cache folder (the export, its parity check and OpenVINO's compile); "warm" reuses one
(the export and the compiled model read from disk).

    python benchmarks/startup.py                          # shunted_t at 224 px, 5 runs, ~3 min on 2 cores
    python benchmarks/startup.py --backend openvino_bf16 --runs 3
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "shunted" / "assets" / "cifar10-demo" / "cat" / "0000.jpg"
WEIGHTS = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one run; stops the benchmark when the command fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="shunted_t")
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--backend", default="auto", help="the cached runtime (default auto)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    base = [sys.executable, "-m", "shunted", "predict", "--model", args.model, "--weights", str(args.weights)]
    base += ["--img-size", str(args.img_size), "--threads", "2", str(IMAGE)]
    root = Path(tempfile.mkdtemp(prefix="shunted-startup-"))
    warm, cold = root / "warm", root / "cold"
    cases = {
        "dygraph": ([*base, "--backend", "dygraph"], warm),
        f"{args.backend}, cold cache": ([*base, "--backend", args.backend], cold),
        f"{args.backend}, warm cache": ([*base, "--backend", args.backend], warm),
        f"{args.backend}, --no-cache": ([*base, "--backend", args.backend, "--no-cache"], warm),
    }
    env = dict(os.environ)
    try:
        env["XDG_CACHE_HOME"] = str(warm)
        timed(cases[f"{args.backend}, warm cache"][0], env)  # fills the warm cache
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        loads = [os.getloadavg()[0]]
        names = list(cases)
        for r in range(args.runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                command, home = cases[name]
                if home == cold:
                    shutil.rmtree(cold, ignore_errors=True)
                env["XDG_CACHE_HOME"] = str(home)
                results[name].append(timed(command, env))
            loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"shunted predict, one image, {args.model} at {args.img_size} px, 2 threads; medians of {args.runs} runs; "
        f"load average {min(loads):.2f}–{max(loads):.2f}"
    )
    print("| case | wall s | CPU s |\n|---|---:|---:|")
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
