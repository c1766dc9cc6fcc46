"""Keep freed tensor memory in the process heap (glibc): Paddle's CPU kernels then stop page-faulting.

Paddle 3.3 allocates every CPU tensor with ``malloc``. glibc serves large requests with a fresh ``mmap`` and gives
them back with ``munmap`` on free, so each new activation tensor is zero-filled by the kernel page by page while the
op writes it: a ReLU over 25 MB took 12 ms instead of 1.5 ms. Raising glibc's mmap and trim thresholds makes freed
blocks reusable: dygraph shunted_t +24 % (``benchmarks/README.md``). The cost: memory freed by Paddle stays reserved by the process instead of going back to
the system, so the resident size stays near its peak.

The ``shunted`` command line calls :func:`keep_freed_memory` at start-up; library users may call it themselves.
``SHUNTED_KEEP_FREED_MEMORY=0`` in the environment turns it off (glibc's defaults stay).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (glibc malloc.h) and the value for both: 1 GiB, above any single activation tensor.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30

_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; False (and no change) where libc is not glibc."""
    global _done
    if _done:
        return True
    if os.environ.get("SHUNTED_KEEP_FREED_MEMORY") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    ok = (
        libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1
        and libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES) == 1
    )
    _done = ok
    return ok


def memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` is in effect in this process."""
    return _done
