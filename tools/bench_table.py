"""Turn ``shunted bench --json`` records into the Markdown table of benchmarks/README.md.

python tools/bench_table.py bench.json [more.json ...]
"""

from __future__ import annotations

import json
import sys

from shunted.engine.bench import markdown_table


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    records = [r for path in argv for r in json.loads(open(path).read())]
    print(markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
