"""A launcher script for multi-process tests that records, per rank, every file a command moves into place.

Every atomic write of the package ends in ``os.replace``; the spy appends each destination to
``SPY_DIR/rank<PADDLE_TRAINER_ID>`` and then runs ``tools/launch.py`` (the checkout's launcher script) with the
command's arguments. ``only_rank0_wrote(spy_dir)`` is what the tests assert: rank 0 wrote, no other rank did.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_SPY = """
import os, runpy, sys
real_replace = os.replace
def spy(src, dst, *a, **kw):
    with open(os.path.join(os.environ["SPY_DIR"], "rank" + os.environ.get("PADDLE_TRAINER_ID", "0")), "a") as fh:
        fh.write(str(dst) + "\\n")
    return real_replace(src, dst, *a, **kw)
os.replace = spy
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def spy_launch(folder: Path) -> tuple[list[str], dict[str, str], Path]:
    """(the script part of a ``paddle.distributed.launch`` command line, its environment, the spy folder)."""
    spy_dir = folder / "spy"
    spy_dir.mkdir(exist_ok=True)
    script = folder / "spy.py"
    script.write_text(_SPY)
    env = dict(os.environ, OMP_NUM_THREADS="1", SPY_DIR=str(spy_dir))
    return [str(script), str(REPO / "tools" / "launch.py")], env, spy_dir


def written_by_rank0(spy_dir: Path) -> set[str]:
    """The file names rank 0 moved into place; asserts that no other rank moved any."""
    assert sorted(p.name for p in spy_dir.iterdir()) == ["rank0"]  # the other ranks replaced no file
    return {Path(p).name for p in (spy_dir / "rank0").read_text().split()}
