"""Script entry for ``paddle.distributed.launch``, which takes a script path rather than ``-m``.

    python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py train --model shunted_t --data ... --output ...

Equivalent to ``shunted <args>``: every process runs the same command; rank 0 writes the run folder.
"""

import sys

from shunted.cli import main

if __name__ == "__main__":
    sys.exit(main())
