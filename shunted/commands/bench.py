"""CPU throughput (img/s, ms per batch) of the inference backends next to the PyTorch reference.

All backends of one model share its weights (fresh, seeded: speed does not depend on their values) and the thread
count; they are timed interleaved after a warm-up, and medians are reported with the ratio to PyTorch eager (the
independent transcription of the official code in shunted/runtime/torch_reference.py, when torch is importable).
Parameters and FLOPs (MACs of the layers and of the attention products) are printed next to the paper's figures;
then the CPU (name, AVX-512 BF16 / AMX) and a GEMM microbenchmark's fp32 and bf16 peak on the same threads, and
each backend's share of that peak for the model's FLOPs.

Backends: dygraph, inference (Paddle Inference + oneDNN, fp32), inference_bf16 (oneDNN bfloat16), onnxruntime,
openvino, openvino_bf16 (OpenVINO on the ONNX export, fp32 / bfloat16), torch, torch_compile (opt-in: compiles
for about a minute per model).

Example:
    shunted bench --models shunted_t shunted_s --batch-sizes 1 8 --threads 2 --json bench.json
    python tools/bench_table.py bench.json     # the README table, with the speed targets of benchmarks/targets.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "CPU throughput of the backends next to the PyTorch reference (same weights, threads, run)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..models.registry import list_models
    from ..runtime import BENCH_BACKENDS, DEFAULT_BENCH_BACKENDS
    from .common import image_size, nonnegative_float, nonnegative_int, positive_int

    parser.add_argument("--models", nargs="+", default=["shunted_t"], choices=list_models(), help="variants")
    parser.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 8], help="default: 1 8")
    parser.add_argument(
        "--img-size", type=image_size, default=224, help="input height and width (default 224)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=2, help="CPU threads for every backend (default 2)"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=list(DEFAULT_BENCH_BACKENDS),
        choices=BENCH_BACKENDS,
        help="backends to time",
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=15, help="timed calls per backend (median; default 15)"
    )
    parser.add_argument(
        "--warmup", type=nonnegative_int, default=3, help="untimed calls per backend first (default 3)"
    )
    parser.add_argument(
        "--pause", type=nonnegative_float, default=0.25, help="seconds between timed calls (default 0.25)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 warm-up, 2 repeats, no pause")
    parser.add_argument(
        "--weights", type=Path, default=None, help="time this checkpoint (one model) instead of fresh weights"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="image folder: each round times a new batch of its images (mean per call, not median)",
    )
    parser.add_argument(
        "--bf16-recheck-margin",
        type=nonnegative_float,
        default=None,
        help="*_bf16 backends: recompute in fp32 the rows whose top-2 gap is below this many logit standard "
        "deviations (default: the backends' 0.05; 0 = plain bf16)",
    )
    parser.add_argument(
        "--stock-torch-allocator",
        action="store_true",
        help="time PyTorch with glibc's default allocator settings instead of the ones shunted uses",
    )
    parser.add_argument(
        "--no-gemm-peak",
        action="store_true",
        help="skip the CPU's GEMM peak (fp32 and bf16, measured first) and each backend's share of it",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the records to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="also print the README table")


def run(args: argparse.Namespace) -> int:
    from ..engine.bench import BenchConfig, available_backends, markdown_table, open_inputs, run_bench
    from ..engine.summary import variant_summary
    from ..errors import ShuntedError
    from ..fileio import check_output_file, check_outputs, write_json_atomic
    from ..runtime import DEFAULT_MARGIN
    from .info import format_table

    if args.json:
        check_output_file(args.json)
        check_outputs([("--json", args.json)], [("--weights", args.weights)])
    if args.quick:
        args.repeats, args.warmup, args.pause = 2, 1, 0.0
    if args.weights is not None and len(args.models) != 1:
        raise ShuntedError(f"--weights {args.weights}: give the one model it holds with --models")
    backends, skipped = available_backends(args.backends)
    if not backends:
        raise ShuntedError("--backends: none of them is available here: " + "; ".join(skipped))
    config = BenchConfig(
        models=args.models,
        batch_sizes=args.batch_sizes,
        img_size=args.img_size,
        threads=args.threads,
        backends=backends,
        repeats=args.repeats,
        warmup=args.warmup,
        pause=args.pause,
        stock_torch_allocator=args.stock_torch_allocator,
        weights=args.weights,
        data=args.data,
        recheck_margin=DEFAULT_MARGIN if args.bf16_recheck_margin is None else args.bf16_recheck_margin,
        gemm_peak=not args.no_gemm_peak,
    )
    preloaded = open_inputs(args.models, args.weights, args.data, args.batch_sizes, args.repeats)
    print(
        format_table([variant_summary(m, args.img_size) for m in args.models], args.img_size, markdown=False)
    )
    if skipped:
        print("skipped: " + "; ".join(skipped))
    print(
        f"timing {', '.join(backends)} at {args.img_size}×{args.img_size}, {args.threads} threads, "
        f"median of {args.repeats} interleaved calls after {args.warmup} warm-up"
    )
    dicts = [r.to_dict() for r in run_bench(config, preloaded=preloaded)]
    if args.json:
        write_json_atomic(args.json, dicts)
        print(f"wrote {len(dicts)} records to {args.json}")
    if args.markdown:
        print(markdown_table(dicts))
    return 0
