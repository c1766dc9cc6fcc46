"""``python -m shunted`` — and the script path for ``paddle.distributed.launch``, which takes a path, not ``-m``:

    python -m paddle.distributed.launch --nproc_per_node 2 \\
        "$(python -c 'import os, shunted; print(os.path.join(os.path.dirname(shunted.__file__), "__main__.py"))')" \\
        train --model shunted_t ...
"""

import sys

if not __package__:  # run as a script: drop this folder from sys.path so its modules shadow nothing
    sys.path.pop(0)

from shunted.cli import main  # noqa: E402

sys.exit(main())
