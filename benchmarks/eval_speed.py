"""Issue 22's goals in one run: the eval loop and the whole ``shunted eval`` process against the model alone.

For each backend (default ``openvino`` and ``openvino_bf16``) and each loader worker count, ``shunted eval`` runs
as its own process on ``--images`` real images (the folder's images listed over and over by a label file) with
the start-up cache warm (one untimed run first); the whole process's img/s is images ÷ its wall time, the eval
loop's is what the JSON reports (``throughput_img_s``). "Model alone" is the same runtime called on one batch of
the same preprocessed images in a process of its own, ``--calls`` calls, median: plain (bf16 without the fp32
recheck, the issue's yardstick) and shipped (with it). Everything is measured in rounds, the order rotating, and
the medians are reported with the load average of the machine during the run (compare ratios within one run).

The *budget* child says where the loop's time goes and what it could reach at best: in a process of its own it
decodes and preprocesses every image of the run in one thread (timed), runs the backend's first call (its extra
time over the second: reading the compiled model, creating kernels), then passes over all the images in batches,
``--passes`` times, with and (bf16) without the recheck. The bound is the loop's speed if decoding shared the
cores with the model perfectly: images ÷ (shipped pass + first call's extra + decoding ÷ cores). It holds every
preprocessed image in memory (0.6 MB each at 224 px).

Goals (issue 22, same run): ``openvino_bf16`` eval loop ≥ 85 % of plain bf16 model-alone; whole process ≥ 75 %
of model-alone for fp32 and bf16 once the cache is warm.

    python benchmarks/eval_speed.py                              # ~6 min on 2 quiet cores
    python benchmarks/eval_speed.py --images 256 --rounds 1      # quick look
    python benchmarks/eval_speed.py --weights W --data DIR --json out.json
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
DEMO = REPO / "shunted" / "assets"


def label_file(data: Path, images: int, out: Path) -> Path:
    """``images`` lines ``relative/path 0`` over the images under ``data`` (sorted): spread evenly, or cycling."""
    files = sorted(
        p.relative_to(data).as_posix()
        for p in data.rglob("*")
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and " " not in p.name
    )
    if not files:
        raise SystemExit(f"{data}: no images")
    step = max(len(files) / images, 1.0)  # evenly spread over a larger folder (every class of a sorted one)
    out.write_text("".join(f"{files[int(i * step) % len(files)]} 0\n" for i in range(images)))
    return out


def load() -> float:
    return os.getloadavg()[0]


def model_alone(plan: dict) -> None:
    """(child) img/s of the runtime alone on one batch of real images: median of ``calls`` calls."""
    import numpy as np

    from shunted.data.datasets import ImageDataset, list_samples
    from shunted.data.transforms import EvalTransform
    from shunted.engine.session import RuntimeConfig, open_model

    margin = {"plain": 0.0, "shipped": 0.05}[plan["variant"]]
    opened = open_model(
        plan["model"],
        plan["weights"],
        RuntimeConfig(plan["backend"], threads=None, img_size=plan["img_size"], recheck_margin=margin),
    )
    transform = EvalTransform.from_config(opened.pretrained_cfg, img_size=plan["img_size"])
    samples = list_samples(plan["data"], labels=plan["labels"]).head(plan["batch_size"])
    dataset = ImageDataset(samples, transform)
    batch = np.stack([dataset[i][0] for i in range(len(dataset))]).astype(np.float32)
    for _ in range(2):
        opened.predictor(batch)
    times = []
    for _ in range(plan["calls"]):
        start = time.perf_counter()
        opened.predictor(batch)
        times.append(time.perf_counter() - start)
    print(json.dumps({"img_s": len(batch) / statistics.median(times)}))


def budget(plan: dict) -> None:
    """(child) Where the loop's time goes, on every image of the run (module docstring): seconds to decode and
    preprocess them in one thread, the backend's first call, and a pass over all of them in batches with the shipped
    predictor and (bf16) without its recheck, medians of ``passes``."""
    import numpy as np

    from shunted.data.datasets import ImageDataset, list_samples
    from shunted.data.transforms import EvalTransform
    from shunted.engine.session import RuntimeConfig, open_model

    def opened(margin: float):
        config = RuntimeConfig(
            plan["backend"], threads=None, img_size=plan["img_size"], recheck_margin=margin
        )
        return open_model(plan["model"], plan["weights"], config)

    shipped = opened(0.05)
    plain = opened(0.0) if plan["backend"].endswith("_bf16") else shipped
    transform = EvalTransform.from_config(shipped.pretrained_cfg, img_size=plan["img_size"])
    dataset = ImageDataset(list_samples(plan["data"], labels=plan["labels"]), transform)
    dataset[0]
    start = time.perf_counter()
    images = [dataset[i][0] for i in range(len(dataset))]
    decode_s = time.perf_counter() - start
    size = plan["batch_size"]
    batches = [np.stack(images[i : i + size]) for i in range(0, len(images), size)]
    del images

    def timed(predictor, x) -> float:
        t0 = time.perf_counter()
        predictor(x)
        return time.perf_counter() - t0

    first = timed(shipped.predictor, batches[0])
    first_extra_s = first - timed(shipped.predictor, batches[0])
    timed(plain.predictor, batches[0])
    passes = {"plain": [], "shipped": []}
    stats = getattr(shipped.predictor, "stats", {"rechecked": 0})
    rechecked = stats["rechecked"]
    for _ in range(plan["passes"]):
        for name, o in (("plain", plain), ("shipped", shipped)):
            if o is not shipped or name == "shipped":  # fp32: one predictor, timed once
                passes[name].append(sum(timed(o.predictor, x) for x in batches))
    passes["plain"] = passes["plain"] or passes["shipped"]
    print(json.dumps({
        "images": sum(len(x) for x in batches),
        "decode_s": decode_s,
        "first_extra_s": first_extra_s,
        "plain_pass_s": statistics.median(passes["plain"]),
        "shipped_pass_s": statistics.median(passes["shipped"]),
        "rechecked_per_pass": (stats["rechecked"] - rechecked) // plan["passes"],
    }))  # fmt: skip


def run_eval(args, backend: str, workers: int, labels: Path, out: Path) -> dict:
    argv = [sys.executable, "-m", "shunted", "eval", "--model", args.model, "--data", str(args.data)]
    argv += ["--labels", str(labels), "--img-size", str(args.img_size), "--batch-size", str(args.batch_size)]
    argv += ["--backend", backend, "--workers", str(workers), "--no-progress", "--output", str(out)]
    argv += ["--weights", str(args.weights), "--num-classes", str(args.num_classes)]
    before = load()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    result = json.loads(out.read_text())
    return {
        "backend": backend,
        "workers": workers,
        "whole_img_s": result["n"] / wall,
        "loop_img_s": result["throughput_img_s"],
        "loop_model_img_s": result["timing"]["model_img_s"],
        "wall_s": wall,
        "load": (before + load()) / 2,
    }


def run_alone(args, backend: str, variant: str, labels: Path) -> dict:
    plan = {
        "model": args.model,
        "weights": str(args.weights),
        "backend": backend,
        "variant": variant,
        "img_size": args.img_size,
        "data": str(args.data),
        "labels": str(labels),
        "batch_size": args.batch_size,
        "calls": args.calls,
        "passes": args.passes,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(plan)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"model alone ({backend}, {variant}) failed:\n{done.stderr[-2000:]}")
    return {"backend": backend, "variant": variant, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="shunted_t")
    parser.add_argument("--weights", type=Path, default=DEMO / "demo" / "ckpt_T_cifar10_fp16.pth")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10" / "test")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backends", nargs="+", default=["openvino", "openvino_bf16"])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--passes", type=int, default=2, help="passes over all images per budget child")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        plan = json.loads(args.child)
        (budget if plan["variant"] == "budget" else model_alone)(plan)
        return 0
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        labels = label_file(args.data, args.images, Path(tmp) / "labels.txt")
        out = Path(tmp) / "r.json"
        for backend in args.backends:  # warm the start-up cache (export, compiled shapes)
            run_eval(args, backend, 0, labels, out)
        for r in range(args.rounds):
            jobs = [(b, w) for b in args.backends for w in args.workers]
            jobs += [
                (b, v)
                for b in args.backends
                for v in (("plain", "shipped", "budget") if b.endswith("_bf16") else ("plain", "budget"))
            ]
            for job in jobs[r % len(jobs) :] + jobs[: r % len(jobs)]:
                if isinstance(job[1], int):
                    records.append(run_eval(args, job[0], job[1], labels, out))
                else:
                    records.append({**run_alone(args, job[0], job[1], labels), "load": load()})
                print(json.dumps(records[-1]), file=sys.stderr, flush=True)
    print(report(records, args))
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:], "records": records}, indent=1) + "\n")
    return 0


def report(records: list[dict], args) -> str:
    from shunted.runtime.cpu_peak import cpu_info

    med = statistics.median
    loads = [r["load"] for r in records]
    lines = [
        f"{cpu_info().describe()}; load average {min(loads):.2f}–{max(loads):.2f} during the run",
        f"{args.model}, {args.img_size} px, batch {args.batch_size}, {args.images} images of {args.data}, "
        f"medians of {args.rounds} rounds",
        "",
        "| backend | workers | whole process img/s | eval loop img/s | model alone (plain) img/s | loop / alone | "
        "whole / alone | model alone (shipped) img/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in args.backends:
        alone = {
            v: med([r["img_s"] for r in records if r["backend"] == backend and r.get("variant") == v] or [0])
            for v in ("plain", "shipped")
        }
        for workers in args.workers:
            runs = [r for r in records if r["backend"] == backend and r.get("workers") == workers]
            whole, loop = med([r["whole_img_s"] for r in runs]), med([r["loop_img_s"] for r in runs])
            plain = alone["plain"]
            shipped = f"{alone['shipped']:.1f}" if alone["shipped"] else "–"
            lines.append(
                f"| {backend} | {workers} | {whole:.1f} | {loop:.1f} | {plain:.1f} | {loop / plain:.0%} | "
                f"{whole / plain:.0%} | {shipped} |"
            )
    lines += [
        "",
        f"Where the loop's time goes (s per {args.images} images; budget: every image preprocessed in memory first, "
        f"decoding timed in one thread, {cores()} cores; bound = what the loop would take if decoding shared the "
        "cores with the model perfectly):",
        "",
        "| backend | model alone, all images (plain) | + rechecks (rows) | + first call | + decoding ÷ cores | "
        f"= bound img/s | eval loop img/s ({max(args.workers)} threads) | loop / bound |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in args.backends:
        parts = [r for r in records if r["backend"] == backend and r.get("variant") == "budget"]
        if not parts:
            continue
        b = {k: med([r[k] for r in parts]) for k in parts[0] if k not in ("backend", "variant")}
        recheck_s = b["shipped_pass_s"] - b["plain_pass_s"]
        decode_s = b["decode_s"] / cores()
        bound = b["images"] / (b["shipped_pass_s"] + b["first_extra_s"] + decode_s)
        runs = [r for r in records if r["backend"] == backend and r.get("workers") == max(args.workers)]
        loop = med([r["loop_img_s"] for r in runs] or [0])
        lines.append(
            f"| {backend} | {b['plain_pass_s']:.2f} | {recheck_s:+.2f} ({b['rechecked_per_pass']:.0f}) | "
            f"{b['first_extra_s']:+.2f} | {decode_s:+.2f} | {bound:.1f} | {loop:.1f} | {loop / bound:.0%} |"
        )
    return "\n".join(lines)


def cores() -> int:
    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
