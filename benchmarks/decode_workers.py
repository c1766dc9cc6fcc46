"""Decoding in threads (what the inference loop does) against decoding in worker processes, in one run.

Issue 22 asked for decoding that takes as little of the cores as it can, measured as workers against threads.
Before issue 22 the eval loop read its batches through Paddle's ``DataLoader`` with ``--workers`` processes; now it
reads them in ``--workers`` threads (``shunted/engine/infer.py``). This script runs the same loop both ways in
one process, on the same model and images, rounds rotating:

- ``threads``: the loop's own reader, ``stream_batches`` (``--workers`` threads);
- ``processes``: ``paddle.io.DataLoader(num_workers=--workers)`` with the loop's collate, as before;
- ``serial``: decoding in the loop's thread (``--workers 0``).

Each pass decodes ``--images`` images (a label file spread over ``--data``), runs the backend on every batch and
counts top-1; the counts must agree. Reported: the pass's img/s (median over rounds), its ratio to ``threads``,
and the CPU seconds the pass took — this process's threads (the model's included) plus its worker processes.

    python benchmarks/decode_workers.py --weights W             # ~4 min on 2 cores (openvino_bf16)
    python benchmarks/decode_workers.py --backend openvino --rounds 2
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from eval_speed import label_file  # noqa: E402

VARIANTS = ("threads", "processes", "serial")


def cpu_seconds() -> float:
    """User + system CPU of this process's threads and of its reaped child processes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def batches(variant: str, dataset, batch_size: int, workers: int):
    from shunted.data.datasets import marked_sample
    from shunted.engine.evaluate import _collate
    from shunted.engine.infer import Source, numpy, stream_batches

    if variant == "processes":
        import paddle

        loader = paddle.io.DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate
        )
        for images, labels, _ in loader:
            yield numpy(images), numpy(labels)
        return
    threads = workers if variant == "threads" else 0
    source = Source(dataset, marked_sample(dataset), _collate, range(len(dataset)), batch_size, threads)
    for images, labels, _ in stream_batches(source):
        yield images, labels


def one_pass(variant: str, dataset, predictor, args) -> dict:
    correct = 0
    cpu0, start = cpu_seconds(), time.perf_counter()
    for images, labels in batches(variant, dataset, args.batch_size, args.workers):
        logits = np.asarray(predictor(images))
        correct += int((logits.argmax(1) == labels).sum())
    wall = time.perf_counter() - start
    return {
        "variant": variant,
        "img_s": len(dataset) / wall,
        "cpu_s": cpu_seconds() - cpu0,
        "correct": correct,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="shunted_t")
    parser.add_argument(
        "--weights", type=Path, default=REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
    )
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10" / "test")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", default="openvino_bf16")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from shunted.data.datasets import ImageDataset, list_samples
    from shunted.data.transforms import EvalTransform
    from shunted.engine.session import RuntimeConfig, open_model
    from shunted.runtime.cpu_peak import cpu_info

    opened = open_model(
        args.model,
        args.weights,
        RuntimeConfig(args.backend, threads=None, img_size=args.img_size),
        num_classes=args.num_classes,
    )
    transform = EvalTransform.from_config(opened.pretrained_cfg, img_size=args.img_size)
    with tempfile.TemporaryDirectory() as tmp:
        labels = label_file(args.data, args.images, Path(tmp) / "labels.txt")
        dataset = ImageDataset(list_samples(args.data, labels=labels), transform, on_error="mark")
        one_pass("serial", dataset, opened.predictor, args)  # warm: compiled shapes, kernels, page cache
        import paddle  # noqa: F401 — imported before timing (the processes variant needs it)

        records = []
        for r in range(args.rounds):
            for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
                records.append(one_pass(variant, dataset, opened.predictor, args))
                print(records[-1], file=sys.stderr, flush=True)
    if len({r["correct"] for r in records}) != 1:
        raise SystemExit(f"top-1 counts differ between the variants: {records}")
    med = statistics.median
    speed = {v: med([r["img_s"] for r in records if r["variant"] == v]) for v in VARIANTS}
    cpu = {v: med([r["cpu_s"] for r in records if r["variant"] == v]) for v in VARIANTS}
    print(f"{cpu_info().describe()}")
    print(
        f"{args.model}, {args.backend}, {args.img_size} px, batch {args.batch_size}, {args.images} images of "
        f"{args.data}, {args.workers} workers, medians of {args.rounds} rounds; top-1 equal in every pass"
    )
    print()
    print("| decoding | loop img/s | vs threads | CPU s per pass |")
    print("|---|---:|---:|---:|")
    for v in VARIANTS:
        workers = 0 if v == "serial" else args.workers
        print(f"| {v} ({workers}) | {speed[v]:.1f} | {speed[v] / speed['threads']:.2f}× | {cpu[v]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
