"""The CPU benchmark behind benchmarks/README.md: every variant, batch 1 and 8, 224 px, 2 threads.

Runs ``shunted bench`` with the README's settings, writes ``benchmarks/results/cpu_<threads>threads.json``,
prints the Markdown table and how each backend stands against the speed targets (``benchmarks/targets.py``) (``tools/bench_table.py`` rebuilds it from the JSON). Takes ~15 minutes on 2 cores;
``--quick`` is the CI smoke run (T only, tiny input, 2 repeats).

    python benchmarks/bench_cpu.py [--threads 2] [--torch-compile] [--bf16-recheck-margin 0] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from targets import target_lines  # benchmarks/ is this script's folder

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--torch-compile", action="store_true", help="also time torch.compile (slow to compile)"
    )
    parser.add_argument(
        "--bf16-recheck-margin",
        type=float,
        default=None,
        help="passed to shunted bench (0 = plain bf16: with fresh weights most rows are near-ties)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    from shunted.cli import main as shunted
    from shunted.runtime import DEFAULT_BENCH_BACKENDS

    backends = list(DEFAULT_BENCH_BACKENDS)
    if args.torch_compile:
        backends.append("torch_compile")
    if args.quick:
        cmd = ["bench", "--quick", "--img-size", "64", "--batch-sizes", "1", "--models", "shunted_t"]
    else:
        cmd = ["bench", "--models", "shunted_t", "shunted_s", "shunted_b", "--batch-sizes", "1", "8"]
        cmd += ["--repeats", str(args.repeats)]
    output = (
        args.output or HERE / "results" / f"cpu_{args.threads}threads{'_quick' if args.quick else ''}.json"
    )
    cmd += ["--threads", str(args.threads), "--backends", *backends, "--json", str(output), "--markdown"]
    if args.bf16_recheck_margin is not None:
        cmd += ["--bf16-recheck-margin", str(args.bf16_recheck_margin)]
    status = shunted(cmd)
    if status == 0:
        for line in target_lines(json.loads(output.read_text())):
            print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
