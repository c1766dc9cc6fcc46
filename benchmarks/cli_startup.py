"""How long ``shunted --help`` takes, next to ``import paddle`` measured in the same run (medians).

    python benchmarks/cli_startup.py [--repeats 7]

The command line builds every subcommand's parser without loading Paddle (tests/test_imports.py asserts it);
this prints the wall time of each, the ratio, and whether the help stays under the 0.3 s budget.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

BUDGET_S = 0.3
CASES = {
    "shunted --help": [sys.executable, "-m", "shunted", "--help"],
    "shunted eval --help": [sys.executable, "-m", "shunted", "eval", "--help"],
    "python -c 'import paddle'": [sys.executable, "-c", "import paddle"],
}


def wall_time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    medians = {}
    for name, cmd in CASES.items():
        wall_time(cmd)  # warm the file cache
        medians[name] = statistics.median(wall_time(cmd) for _ in range(args.repeats))
    paddle_s = medians["python -c 'import paddle'"]
    print(f"| command | median s ({args.repeats} runs) | × import paddle | under {BUDGET_S} s |")
    print("|---|---:|---:|---|")
    for name, seconds in medians.items():
        within = "yes" if seconds < BUDGET_S else "no"
        print(f"| {name} | {seconds:.3f} | {seconds / paddle_s:.2f} | {within} |")
    return 0 if medians["shunted --help"] < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
