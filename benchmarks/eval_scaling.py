"""Evaluation throughput with 1 and 2 processes and 0/1/2 decoding threads: does decoding or the model set the pace?

Runs what ``shunted eval`` runs (``shunted/engine/evaluate.py:run_evaluation``, sharded over the processes of
``paddle.distributed.launch`` exactly as ``tools/launch.py eval`` shards them) on real JPEGs at 224 px: the
ImageNet sample images beside the repository by default, listed over and over up to ``--images``. The model is a
fresh shunted_t (1,000 classes): throughput does not depend on the weights. Backends: ``dygraph`` and the fastest
float32 runtime whose parity with dygraph the tests check (``openvino``; else ``onnxruntime``, else
``inference``; README "Export and fast inference").

For each (backend, processes, workers) the evaluation is repeated ``--repeats`` times, workers rotating within
each repeat, and the median is reported, with the ratio to the same backend's 1-process 0-worker median of this
run. ``model s`` and ``data wait s`` are summed over the processes: a data wait near zero means the model is the
bottleneck. A separate line times decoding + preprocessing alone in one process (one core). The last column
extrapolates the median to ImageNet val's 50,000 images.

    python benchmarks/eval_scaling.py                                  # ~5 minutes on 2 cores
    python benchmarks/eval_scaling.py --images 64 --repeats 1 --backends dygraph   # quick look
    python benchmarks/eval_scaling.py --data ../shared/data/cifar10/test --json scaling.json

Processes share the cores: each of N processes on one machine uses cores / N threads (what ``shunted eval`` does
without ``--threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
IMAGENET_VAL = 50_000
EXACT_FP32 = ("openvino", "onnxruntime", "inference")  # fastest first (README's benchmark table, batch 8)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def default_backends() -> list[str]:
    needs = {"openvino": "openvino", "onnxruntime": "onnxruntime", "inference": "paddle"}
    fastest = next(b for b in EXACT_FP32 if _installed(needs[b]))
    return ["dygraph", fastest]


def label_file(data: Path, images: int, out: Path) -> Path:
    """A label file listing the images under ``data`` (sorted, recursively) cyclically up to ``images`` lines."""
    from shunted.fileio import IMAGE_EXTENSIONS

    files = sorted(
        p.relative_to(data).as_posix()
        for p in data.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise SystemExit(f"{data}: no images")
    if any(" " in f for f in files):
        files = [f for f in files if " " not in f]
    out.write_text("".join(f"{files[i % len(files)]} 0\n" for i in range(images)))
    return out


def decode_rate(data: Path, labels: Path, img_size: int, count: int) -> float:
    """Images per second of decoding + the official preprocessing alone, in this process (one core)."""
    from shunted.data.datasets import ImageDataset, list_samples
    from shunted.data.transforms import EvalTransform
    from shunted.models import get_pretrained_cfg

    transform = EvalTransform.from_config(get_pretrained_cfg("shunted_t"), img_size=img_size)
    dataset = ImageDataset(list_samples(data, labels=labels).head(count), transform)
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.perf_counter() - start)


def worker(plan: dict) -> None:
    """One launch (1 process, or every rank under the launcher): each backend, ``repeats`` x each worker count."""
    import numpy as np

    from shunted.data.datasets import ImageDataset, list_samples
    from shunted.data.transforms import EvalTransform
    from shunted.engine.evaluate import EvalRun, run_evaluation
    from shunted.engine.session import RuntimeConfig, open_model
    from shunted.engine.world import init_world, threads_per_process

    world = init_world()
    threads = threads_per_process(world) or plan["cores"]
    records = []
    for backend in plan["backends"]:
        t0 = time.perf_counter()
        opened = open_model(
            plan["model"], None, RuntimeConfig(backend, threads=threads, img_size=plan["img_size"])
        )
        open_s = time.perf_counter() - t0
        cfg = opened.pretrained_cfg
        transform = EvalTransform.from_config(cfg, img_size=plan["img_size"])
        dataset = ImageDataset(list_samples(plan["data"], labels=plan["labels"]), transform, on_error="mark")
        batch = np.zeros((plan["batch_size"], 3, plan["img_size"], plan["img_size"]), np.float32)
        for _ in range(2):  # warm-up: first calls build kernels / compile the static batch shape
            opened.predictor(batch)
        for repeat in range(plan["repeats"]):
            order = (
                plan["workers"][repeat % len(plan["workers"]) :]
                + plan["workers"][: repeat % len(plan["workers"])]
            )
            for workers in order:
                result = run_evaluation(
                    opened.predictor,
                    dataset,
                    opened.num_classes,
                    {"model": plan["model"]},
                    EvalRun(batch_size=plan["batch_size"], workers=workers, progress=False),
                    world=world,
                )
                if world.main:
                    records.append(
                        {
                            "backend": backend,
                            "processes": world.size,
                            "threads": threads,
                            "workers": workers,
                            "repeat": repeat,
                            "open_s": round(open_s, 2),
                            "n": result["n"],
                            "wall_s": result["wall_time_s"],
                            "img_s": result["throughput_img_s"],
                            "model_s": result["timing"]["model_s"],
                            "data_wait_s": result["timing"]["data_wait_s"],
                        }
                    )
                    print(json.dumps(records[-1]), flush=True)
        del opened
    if world.main:
        Path(plan["out"]).write_text(json.dumps(records))


def launch(plan: dict, processes: int, folder: Path) -> list[dict]:
    plan = dict(plan, out=str(folder / f"p{processes}.json"))
    plan_file = folder / f"plan{processes}.json"
    plan_file.write_text(json.dumps(plan))
    script = [str(Path(__file__).resolve()), "--worker", str(plan_file)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if processes == 1:
        cmd = [sys.executable, *script]
    else:
        log_dir = folder / f"log{processes}"
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--log_dir", str(log_dir)]
        cmd += ["--nproc_per_node", str(processes), *script]
        env["OMP_NUM_THREADS"] = "1"  # Paddle warns otherwise; threads are set explicitly per runtime
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log = folder / f"log{processes}" / "workerlog.0"
        tail = log.read_text()[-3000:] if log.exists() else done.stderr[-3000:]
        raise SystemExit(f"{processes}-process run failed:\n{tail}")
    return json.loads(Path(plan["out"]).read_text())


def table(records: list[dict], decode_img_s: float) -> str:
    """The Markdown table of the medians (module docstring), then the decoding-alone rate."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["backend"], r["processes"], r["workers"]), []).append(r)
    medians = {k: statistics.median(r["img_s"] for r in v) for k, v in groups.items()}
    lines = [
        "| backend | processes × threads | decoding threads | img/s (median) | vs 1 process, 0 threads "
        "| model s | data wait s | 50,000 images |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (backend, processes, workers), runs in sorted(groups.items()):
        img_s = medians[(backend, processes, workers)]
        base = medians.get((backend, 1, 0))
        ratio = f"{img_s / base:.2f}×" if base else "–"
        mid = sorted(runs, key=lambda r: r["img_s"])[len(runs) // 2]  # the median run's timing
        hours, minutes = divmod(round(IMAGENET_VAL / img_s / 60), 60)
        lines.append(
            f"| {backend} | {processes} × {runs[0]['threads']} | {workers} | {img_s:.1f} | {ratio} "
            f"| {mid['model_s']:.1f} | {mid['data_wait_s']:.1f} | {hours} h {minutes:02d} min |"
        )
    lines.append(f"\ndecoding + preprocessing alone (one process, one core): {decode_img_s:.1f} img/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=SHARED / "data" / "imagenet-samples", help="folder of images"
    )
    parser.add_argument("--model", default="shunted_t")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument(
        "--backends", nargs="+", default=None, help="default: dygraph and the fastest exact fp32"
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--images", type=int, default=None, help="images per evaluation (default per backend)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write every timed run here")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(json.loads(args.worker.read_text()))
        return 0

    backends = args.backends or default_backends()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="shunted-eval-scaling-") as tmp:
        folder = Path(tmp)
        decode_img_s = 0.0
        for backend in backends:
            # dygraph ~10 img/s on 2 cores, the static fp32 runtimes ~3-4x that: ~5 s per evaluation
            images = args.images or (48 if backend == "dygraph" else 160)
            labels = label_file(args.data.resolve(), images, folder / f"{backend}.txt")
            if not decode_img_s:
                decode_img_s = decode_rate(args.data.resolve(), labels, args.img_size, min(images, 48))
            plan = {
                "backends": [backend],
                "model": args.model,
                "img_size": args.img_size,
                "data": str(args.data.resolve()),
                "labels": str(labels),
                "batch_size": args.batch_size,
                "workers": args.workers,
                "repeats": args.repeats,
                "cores": cores,
            }
            for processes in args.processes:
                records += launch(plan, processes, folder)
    print(
        f"{args.model}, {args.img_size} px, batch {args.batch_size}, {cores} cores, data {args.data} "
        f"({len(records)} timed evaluations, median of {args.repeats}; {time.perf_counter() - start:.0f} s; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)\n"
    )
    print(table(records, decode_img_s))
    if args.json:
        load = {
            "before": load_before,
            "after": os.getloadavg()[0],
        }  # other work on the machine skews the figures
        args.json.write_text(
            json.dumps({"decode_img_s": decode_img_s, "load_average": load, "runs": records}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
