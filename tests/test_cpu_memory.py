"""keep_freed_memory: a freed large block stays in the heap for the next tensor instead of going back to the OS."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc tuning only"
)

# Allocates and frees 64 MiB with malloc, then prints the free bytes glibc keeps in its heap (mallinfo2).
PROBE = """
import ctypes, sys
from shunted.cpu_memory import keep_freed_memory, memory_kept
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory() and memory_kept()
elif sys.argv[1] == "switched-off":
    assert not keep_freed_memory() and not memory_kept()
else:
    assert not memory_kept()
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
block = libc.malloc(64 << 20)
ctypes.memset(block, 1, 64 << 20)
libc.free(block)
print(libc.mallinfo2().fordblks)
"""


def _free_heap_bytes_after_a_64mib_block(mode: str, **env: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return int(out.stdout.split()[-1])


def test_freed_blocks_stay_in_the_heap_only_when_asked():
    assert _free_heap_bytes_after_a_64mib_block("keep") >= 64 << 20
    assert _free_heap_bytes_after_a_64mib_block("default") < 64 << 20


def test_environment_switch_keeps_glibc_defaults():
    assert _free_heap_bytes_after_a_64mib_block("switched-off", SHUNTED_KEEP_FREED_MEMORY="0") < 64 << 20
