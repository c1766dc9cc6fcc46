"""How many images each OpenVINO stream should take per call: the evidence for ``PART`` in shunted/runtime/openvino.py.

A batch of ``--batch`` images (default 64) runs as parts of P images, ``--threads`` single-thread streams at a time
(what the ``openvino`` / ``openvino_bf16`` backends do), for P in ``--parts``; one model compiled per P. Each P is
timed over ``--calls`` batches in rotating rounds (``--rounds``), median img/s, and the ratio to P = batch /
threads (the whole batch split once over the streams, what the backends did before parts). Weights do not change
the speed: a fresh shunted_t, exported once to a temporary folder.

    python benchmarks/openvino_parts.py                      # fp32 and bf16, ~2 min on 2 cores
    python benchmarks/openvino_parts.py --precisions bf16 --parts 4 8 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="shunted_t")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--precisions", nargs="+", default=["f32", "bf16"])
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from shunted.engine.export import save_onnx
    from shunted.factory import create_model
    from shunted.runtime.cpu_peak import cpu_info
    from shunted.runtime.openvino import cpu_core, fold_depthwise_residuals, static_requests

    x = (
        np.random.default_rng(0)
        .standard_normal((args.batch, 3, args.img_size, args.img_size))
        .astype(np.float32)
    )
    whole = -(-args.batch // args.threads)
    with tempfile.TemporaryDirectory() as folder:
        path = save_onnx(create_model(args.model), folder, args.img_size)
        core = cpu_core(args.threads, None)  # the runtime's Core and static models (streams × 1 thread)
        runners = {}
        for precision in args.precisions:
            model = core.read_model(str(path))
            if precision == "bf16":
                fold_depthwise_residuals(model)  # what openvino_bf16 runs
            for part in sorted(set(args.parts) | {whole}):
                runners[precision, part] = static_requests(
                    core, model, part, args.threads, args.threads, precision
                )

    def run(requests, part):
        padded = np.concatenate([x, np.zeros(((-len(x)) % part, *x.shape[1:]), np.float32)])
        chunks = [padded[i : i + part] for i in range(0, len(padded), part)]
        for i in range(0, len(chunks), len(requests)):
            group = list(zip(requests, chunks[i : i + len(requests)], strict=False))
            for request, chunk in group:
                request.start_async({0: chunk})
            for request, _ in group:
                request.wait()

    times: dict = {key: [] for key in runners}
    for key, requests in runners.items():
        run(requests, key[1])  # warm-up: kernels made
    keys = list(runners)
    for r in range(args.rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            for _ in range(args.calls):
                start = time.perf_counter()
                run(runners[key], key[1])
                times[key].append(time.perf_counter() - start)
    load = os.getloadavg()[0]
    print(f"{cpu_info().describe()}; load average {load:.2f} at the end")
    print(
        f"{args.model}, {args.img_size} px, batch {args.batch}, {args.threads} streams × 1 thread, "
        f"median of {args.rounds * args.calls} batches\n"
    )
    print("| precision | images per stream call | img/s | vs whole batch split once |")
    print("|---|---:|---:|---:|")
    for precision, part in keys:
        img_s = args.batch / statistics.median(times[precision, part])
        base = args.batch / statistics.median(times[precision, whole])
        print(
            f"| {precision} | {part}{' (split once)' if part == whole else ''} | {img_s:.1f} | {img_s / base:.2f}× |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
