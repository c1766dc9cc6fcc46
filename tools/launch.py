"""The script path ``paddle.distributed.launch`` runs (it takes a path, not ``-m``) for any ``shunted`` command:
``tools/launch.py ARGS`` is ``shunted ARGS`` in each process.

One machine, N processes:

    python -m paddle.distributed.launch --nproc_per_node 2 tools/launch.py eval --model shunted_t --data val ...
    python -m paddle.distributed.launch --nproc_per_node 2 tools/launch.py train --model shunted_t --data ... --output runs/t

Several machines: the same command on each, with every machine's address (the first is the master):

    python -m paddle.distributed.launch --ips 10.0.0.1,10.0.0.2 --nproc_per_node 2 tools/launch.py eval ...

A pip install has no tools/ folder: its equivalent is the package's ``__main__.py`` (shunted/__main__.py):

    python -m paddle.distributed.launch --nproc_per_node 2 \\
        "$(python -c 'import os, shunted; print(os.path.join(os.path.dirname(shunted.__file__), "__main__.py"))')" \\
        eval --model shunted_t ...

Process 0 writes the outputs (``train``: the run folder; ``eval``: one result, identical to a one-process run's);
the launcher keeps each process's output in ``log/workerlog.N`` (``--log_dir``). When a process fails, the
launcher stops the others and exits non-zero, printing that process's last lines (its ``shunted CMD: error: ...``).
"""

import sys

from shunted.cli import main

if __name__ == "__main__":
    sys.exit(main())
