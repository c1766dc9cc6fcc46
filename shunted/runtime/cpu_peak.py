"""What the CPU can do: its name and matrix-unit flags, and a GEMM microbenchmark's fp32 and bf16 peak.

``shunted bench`` prints both and each runtime's share of the peak for the model's FLOPs (2 × MACs per image):
a runtime at 30 % of the GEMM peak is bound by something else than matrix work. The GEMM is OpenVINO's own MatMul
(the runtime the fastest backends use), square, large enough to be compute-bound, on the same thread count as the
runtimes, one stream; the best of several calls is the peak. Without OpenVINO the peak is not measured.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

GEMM_SIZE = 2048  # M = N = K: 17.2 GFLOP per call, far beyond the caches
MATRIX_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


@dataclass
class CpuInfo:
    name: str
    logical_cores: int
    flags: dict  # MATRIX_FLAGS → bool (empty where /proc/cpuinfo is absent)

    def describe(self) -> str:
        bf16 = "yes" if self.flags.get("avx512_bf16") else "no"
        amx = "yes" if self.flags.get("amx_bf16") else "no"
        known = "" if self.flags else " (flags unknown: no /proc/cpuinfo)"
        return (
            f"CPU: {self.name}, {self.logical_cores} logical cores; AVX-512 BF16: {bf16}; AMX: {amx}{known}"
        )


def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> CpuInfo:
    """The CPU's model name, logical core count and the MATRIX_FLAGS it has (Linux; elsewhere the name only)."""
    name, flags = platform.processor() or platform.machine(), {}
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key == "flags" and not flags:
            present = set(value.split())
            flags = {flag: flag in present for flag in MATRIX_FLAGS}
    return CpuInfo(name=name, logical_cores=os.cpu_count() or 1, flags=flags)


def gemm_peak(threads: int, precision: str, size: int = GEMM_SIZE, calls: int = 16) -> float | None:
    """Best GFLOP/s of OpenVINO's MatMul (``size``³, ``precision`` "f32" or "bf16") on ``threads`` threads;
    None without OpenVINO. bf16 on a CPU without bf16 units runs fp32 (OpenVINO falls back): same figure."""
    try:
        import numpy as np
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    a = ops.parameter([size, size], np.float32, name="a")
    b = ops.constant(rng.standard_normal((size, size), np.float32))
    model = ov.Model([ops.matmul(a, b, False, False)], [a], "gemm")
    core = ov.Core()
    compiled = core.compile_model(
        model,
        "CPU",
        {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": int(threads)},
    )
    request = compiled.create_infer_request()
    x = rng.standard_normal((size, size), np.float32)
    request.infer({0: x})
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        request.infer({0: x})
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
