"""Let the MKL bundled with Paddle use its AVX2 kernels on AMD CPUs.

Paddle 3.3's CPU wheel ships an old MKL (``libmklml_intel.so``) whose dispatcher gives non-Intel CPUs its generic
code path for Paddle's matmul and GEMM-based convolutions (dygraph, training). ``MKL_DEBUG_CPU_TYPE=5``, the switch
that old MKL releases read, makes it use its AVX2 kernels regardless of vendor: dygraph shunted_t +54 % on this
project's AMD EPYC machine (``benchmarks/README.md``). The variable must be in the environment before MKL
starts, so ``shunted/__init__.py`` sets it before importing Paddle; only on AMD CPUs (on Intel it could only lower
the code path) and only if the user has not set it. PyTorch's newer MKL ignores it.
"""

from __future__ import annotations

import os

VARIABLE = "MKL_DEBUG_CPU_TYPE"
AVX2 = "5"


def cpu_vendor(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """The ``vendor_id`` of the first CPU in ``cpuinfo`` (Linux), or None. Reads only up to that line: this runs
    at every import of the package, and ``/proc/cpuinfo`` has a block per core."""
    try:
        with open(cpuinfo, errors="replace") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip()
    except OSError:
        return None
    return None


def use_avx2_kernels_on_amd(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Set ``MKL_DEBUG_CPU_TYPE=5`` on an AMD CPU unless already set; True if this call set it."""
    if VARIABLE in os.environ or cpu_vendor(cpuinfo) != "AuthenticAMD":
        return False
    os.environ[VARIABLE] = AVX2
    return True
