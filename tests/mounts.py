"""Small tmpfs mounts for output-error tests: a real read-only file system (EROFS) and a real full one (ENOSPC).

Mounting needs root (or CAP_SYS_ADMIN); elsewhere the tests that need a mount skip and say so.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def tmpfs_factory(base: Path) -> Iterator:
    """``make(size_kb=64, read_only=False, fill=False) -> Path``: a fresh tmpfs under ``base``, unmounted after."""
    import pytest

    mounted: list[Path] = []
    counter = itertools.count()

    def make(size_kb: int = 64, read_only: bool = False, fill: bool = False) -> Path:
        folder = base / f"tmpfs{next(counter)}"
        folder.mkdir()
        options = f"size={size_kb}k" + (",ro" if read_only else "")
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
        )
        if run.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {run.stderr.strip()}")
        mounted.append(folder)
        if fill:  # a full disk: every block used
            with contextlib.suppress(OSError), open(folder / "filler", "wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        return folder

    try:
        yield make
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)
