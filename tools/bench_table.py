"""Turn ``shunted bench --json`` records into the Markdown table of benchmarks/README.md, with how each backend
stands against the speed targets (benchmarks/targets.py).

python tools/bench_table.py bench.json [more.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from shunted.engine.bench import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from targets import target_lines  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    records = [r for path in argv for r in json.loads(open(path).read())]
    print(markdown_table(records))
    for line in target_lines(records):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
