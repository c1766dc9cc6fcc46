"""The speed targets of benchmarks/README.md and how a measurement stands against them.

Used by ``benchmarks/bench_cpu.py`` (after its run) and ``tools/bench_table.py`` (from saved records); the
records are those of ``shunted bench --json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# img/s ratio to PyTorch eager at batch 8 (224 px, 2 threads on the reference machine). The "fastest shipped
# path" target (2.0x) is shown for every candidate; a bf16 one counts only with the agreement.
TARGETS = {
    "openvino_bf16": 2.0,
    "inference_bf16": 2.0,
    "openvino": 2.0,
    "onnxruntime": 2.0,
    "inference": 1.5,
    "dygraph": 0.7,
}
BF16_COUNTS_IF = "counts only if top-1 agrees with fp32 on >= 99.9 % (benchmarks/bf16_agreement.py)"
TARGET_WHY = {
    "dygraph": "Paddle's eager CPU kernels: conv2d ~29 %, depthwise conv ~27 % (3x slower than PyTorch's), matmul "
    "~15 % of the time",
    "inference": "oneDNN fp32 convolutions (1x1 feed-forward and depthwise) are ~60 % of the time",
    "onnxruntime": "ORT Conv/MatMul are ~75 % of the time; no bf16 on CPU",
    "inference_bf16": BF16_COUNTS_IF,
    "openvino": "fp32 Conv/MatMul near the fp32 limit of the cores; the bf16 paths are the fast ones",
    "openvino_bf16": BF16_COUNTS_IF,
}


def target_lines(records: Sequence[Mapping], batch_size: int = 8) -> list[str]:
    """How each backend stands against the targets (needs the torch measurement); records as JSON dicts."""
    lines = []
    groups: dict[str, dict[str, float]] = {}
    for r in records:
        if r["batch_size"] == batch_size:
            groups.setdefault(r["model"], {})[r["backend"]] = r["img_per_s"]
    for model, row in groups.items():
        if "torch" not in row:
            continue
        for backend, target in TARGETS.items():
            if backend not in row:
                continue
            ratio = row[backend] / row["torch"]
            if ratio >= target:
                verdict = "met" + (f" on speed; {TARGET_WHY[backend]}" if backend.endswith("_bf16") else "")
            else:
                verdict = f"MISSED by {100 * (1 - ratio / target):.0f} %: {TARGET_WHY[backend]}"
            lines.append(
                f"target {model} bs {batch_size} {backend} >= {target}x torch: {ratio:.2f}x {verdict}"
            )
    return lines
