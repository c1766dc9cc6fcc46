"""CamVid semantic segmentation: a Shunted-T backbone pretrained on CIFAR-10 vs from scratch, same budget.

Trains ``shunted_t_fpn`` (Semantic FPN head, shunted/models/fpn.py) twice with ``shunted seg-train`` on the 367
CamVid training frames (../shared/data/camvid, 11 classes, ignore 11), once with the backbone initialised from the
bundled CIFAR-10 classification checkpoint (shunted/assets/demo/ckpt_T_cifar10_fp16.pth, a 64-px model) and once
from scratch; same seed, epochs, steps, batch and schedule. Both runs go side by side, one process each with
Paddle's default single CPU thread (2 cores in all). Reduced resolution, to fit ~30 minutes on 2 CPU cores:

- images and labels at ``--scale`` (default 0.375: 480×360 → 180×135) as the base size of mmseg's random
  rescale (ratio 0.5–2.0), random crops of ``--crop``² (96), flip, photometric distortion;
- validation on all 101 val frames, the whole image at ``--scale``, logits resized back bilinearly, mIoU counted
  on the full-resolution 480×360 labels (shunted/engine/seg/evaluate.py);
- ``--epochs`` × ``--steps`` × ``--batch-size`` crops per run (AdamW, poly, power 1.0, lr ``--lr``).

Then, with the pretrained run's final weights: per-class IoU of both runs, a training-curve PNG, one val image
with ground truth and prediction overlays, and images/s of whole-image inference (what ``shunted seg-predict``
runs: the model's forward on one image) in Paddle dygraph and in the PyTorch transcription
(tests/reference/torch_seg_reference.py, same weights), interleaved image by image on the same thread count.

    python benchmarks/seg_camvid.py                    # ~30 min on 2 cores; writes benchmarks/results/seg_camvid/
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
CHECKPOINT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
RUNS = ("pretrained", "scratch")


def train_argv(args, name: str) -> list[str]:
    data = args.data.resolve()
    base = [int(round(480 * args.scale)), int(round(360 * args.scale))]
    argv = ["seg-train", "--model", "shunted_t_fpn", "--data", str(data)]
    argv += ["--list", str(data / "train.txt"), "--val-list", str(val_list(args))]
    argv += ["--num-classes", "11", "--ignore-index", "11", "--output", str(args.work / name)]
    argv += [
        "--epochs",
        str(args.epochs),
        "--max-steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
    ]
    argv += ["--crop-size", str(args.crop), "--workers", str(args.workers), "--lr", str(args.lr)]
    argv += ["--seed", str(args.seed)]
    overrides = [
        f"DataLoader.Train.transform.base_size=[{base[0]},{base[1]}]",
        f"DataLoader.Eval.transform.scale={args.scale}",
        f"Global.eval_interval={args.eval_interval}",
        f"Optimizer.lr.warmup_iters={args.warmup}",
        "Arch.class_names=[Sky,Building,Pole,Road,Pavement,Tree,SignSymbol,Fence,Car,Pedestrian,Bicyclist]",
    ]
    argv += [x for o in overrides for x in ("-o", o)]
    if name == "pretrained":
        argv += ["--pretrained", str(args.checkpoint)]
    return argv


def val_list(args) -> Path:
    """val.txt, or its first --val-images lines (smoke runs) in the work folder."""
    if args.val_images is None:
        return args.data / "val.txt"
    path = args.work / f"val{args.val_images}.txt"
    path.write_text("\n".join((args.data / "val.txt").read_text().split("\n")[: args.val_images]) + "\n")
    return path


def train_both(args) -> dict[str, float]:
    """Start both runs (resuming a run folder that holds one), wait; their wall times in seconds."""
    procs, start = {}, time.perf_counter()
    for name in RUNS:
        argv = train_argv(args, name)
        if (args.work / name / "last.pdckpt").exists():
            argv.append("--resume")
        log = open(args.work / f"{name}.log", "w")  # noqa: SIM115 — closed when the process ends
        env = dict(os.environ, PYTHONPATH=str(REPO))
        procs[name] = (
            subprocess.Popen([sys.executable, "-m", "shunted", *argv], stdout=log, stderr=log, env=env),
            log,
        )
        print(f"started {name}: shunted {' '.join(argv)}", flush=True)
        if args.sequential:
            procs[name][0].wait()
    seconds: dict[str, float] = {}
    while len(seconds) < len(procs):
        for name, (proc, log) in procs.items():
            if name in seconds or proc.poll() is None:
                continue
            log.close()
            seconds[name] = time.perf_counter() - start
            if proc.returncode:
                tail = (args.work / f"{name}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"the {name} run failed (exit {proc.returncode}):\n{tail}")
        time.sleep(1.0)
    return seconds


def load_run(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    rows = json.loads((run / "metrics.json").read_text())
    return {"summary": summary, "rows": rows}


def plot_curves(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, run in runs.items():
        rows = run["rows"]
        ax1.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], marker=".", label=name)
        val = [r for r in rows if r.get("val_miou") is not None]
        ax2.plot([r["epoch"] for r in val], [r["val_miou"] for r in val], marker="o", label=name)
    ax1.set(
        xlabel="epoch", ylabel="train loss (pixel cross-entropy)", title="shunted_t_fpn on CamVid: training"
    )
    ax2.set(xlabel="epoch", ylabel="val mIoU (%)", title="validation (101 frames)")
    ax1.legend()
    ax2.legend()
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def overlay_picture(args, weights: Path, path: Path) -> str:
    """One val frame: the image, the ground truth overlay and the prediction overlay, with a legend."""
    import paddle
    from PIL import Image, ImageDraw

    from shunted import create_model
    from shunted.data.seg_datasets import read_label
    from shunted.data.seg_transforms import SegEvalTransform
    from shunted.engine.seg.evaluate import predicted_labels
    from shunted.engine.seg.palette import CAMVID_CLASSES, get_palette, legend_strip, overlay

    line = (args.data / "val.txt").read_text().split("\n")[args.overlay_index].split()
    image = Image.open(args.data / line[0]).convert("RGB")
    label = read_label(args.data / line[1])
    model = create_model("shunted_t_fpn", pretrained=str(weights))
    model.eval()
    pcfg = model.pretrained_cfg
    x = SegEvalTransform(mean=tuple(pcfg.mean), std=tuple(pcfg.std), scale=args.scale)(image)
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x[None])).numpy()[0]
    pred = predicted_labels(logits, label.shape)
    palette = get_palette("camvid", 12)  # index 11 (unlabelled) black
    truth = overlay(image, label, palette, alpha=0.6)
    guess = overlay(image, pred, palette, alpha=0.6)
    w, h = image.size
    present = sorted(set(np.unique(label).tolist()) | set(np.unique(pred).tolist()) - {11})
    present = [c for c in present if c < 11]
    counts = np.bincount(pred.ravel(), minlength=12)
    strip = legend_strip(
        3 * w, present, list(CAMVID_CLASSES), palette, [100.0 * counts[c] / pred.size for c in present]
    )
    out = Image.new("RGB", (3 * w, h + 22 + strip.height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for i, (pic, title) in enumerate(
        ((image, "image"), (truth, "ground truth"), (guess, "prediction (CIFAR-10-pretrained backbone)"))
    ):
        out.paste(pic, (i * w, 22))
        draw.text((i * w + 4, 4), title, fill=(0, 0, 0))
    out.paste(strip, (0, 22 + h))
    out.save(path)
    return line[0]


def inference_speed(args, weights: Path) -> dict:
    """Images/s of whole-image inference, Paddle dygraph vs the PyTorch transcription, interleaved per image."""
    import paddle
    import torch
    from PIL import Image

    from shunted import create_model
    from shunted.data.seg_transforms import SegEvalTransform

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test-only references
    from reference import torch_seg_reference

    paddle.base.core.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    model = create_model("shunted_t_fpn", pretrained=str(weights))
    model.eval()
    reference = torch_seg_reference.from_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
    pcfg = model.pretrained_cfg
    lines = (args.data / "val.txt").read_text().split("\n")
    out = {}
    for label, scale in (("reduced", args.scale), ("full", None)):
        transform = SegEvalTransform(mean=tuple(pcfg.mean), std=tuple(pcfg.std), scale=scale)
        xs = [
            transform(Image.open(args.data / ln.split()[0]).convert("RGB"))[None]
            for ln in lines[: args.speed_images]
        ]
        times = {"paddle": [], "torch": []}
        worst = 0.0
        for i, x in enumerate(xs + xs[:1]):  # the first image twice: its first pass is a warm-up
            t0 = time.perf_counter()
            with paddle.no_grad():
                a = model(paddle.to_tensor(x)).numpy()
            t1 = time.perf_counter()
            with torch.no_grad():
                b = reference(torch.from_numpy(x)).numpy()
            t2 = time.perf_counter()
            if i > 0:
                times["paddle"].append(t1 - t0)
                times["torch"].append(t2 - t1)
            worst = max(worst, float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12)))
        h, w = xs[0].shape[2:]
        out[label] = {
            "input": f"{w}x{h}",
            "images": len(times["paddle"]),
            "paddle_img_s": round(1.0 / float(np.median(times["paddle"])), 3),
            "torch_img_s": round(1.0 / float(np.median(times["torch"])), 3),
            "max_rel_diff_logits": worst,
        }
    out["threads"] = args.threads
    return out


def _pct(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def table(result: dict) -> str:
    names = result["class_names"]
    runs = result["runs"]
    lines = [
        "| backbone init | val mIoU (%) | pixel acc (%) | mean acc (%) | best mIoU (epoch) |",
        "|---|---|---|---|---|",
    ]
    for r in runs.values():
        lines.append(
            f"| {r['label']} | {_pct(r['miou'])} | {_pct(r['pixel_accuracy'])} | {_pct(r['mean_accuracy'])} | "
            f"{_pct(r['best_miou'])} ({r['best_epoch']}) |"
        )
    lines += [
        "",
        "| class | " + " | ".join(runs[n]["label"] for n in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for k, cls in enumerate(names):
        lines.append(f"| {cls} | " + " | ".join(_pct(runs[n]["class_iou"][k]) for n in runs) + " |")
    s = result.get("speed")
    if s:
        lines += [
            "",
            f"| inference (whole image, batch 1, {s['threads']} threads) | input | Paddle dygraph img/s | "
            "PyTorch img/s | max rel. logit diff |",
            "|---|---|---|---|---|",
        ]
        for key, what in (("reduced", "benchmark scale"), ("full", "full resolution")):
            v = s[key]
            lines.append(
                f"| {what} | {v['input']} | {v['paddle_img_s']} | {v['torch_img_s']} | {v['max_rel_diff_logits']:.1e} |"
            )
    return "\n".join(lines) + "\n"


def write_report(result: dict, output: Path) -> str:
    """seg_camvid.md (settings, tables, figures) from the result; returns the tables."""
    text = table(result)
    st = result["setting"]
    walls = ", ".join(f"{k} {v / 60:.1f} min" for k, v in result["train_wall_s"].items())
    about = (
        f"shunted_t_fpn (Semantic FPN), CamVid 367 train / 101 val frames, 11 classes (ignore 11). Reduced "
        f"resolution: images at {st['scale']} scale ({st['image_size']}), random rescale 0.5-2.0, crops "
        f"{st['crop']}x{st['crop']}, batch {st['batch_size']}, {st['epochs']} epochs x {st['steps_per_epoch']} steps "
        f"({st['crops_seen']} crops per run), {st['schedule']}, peak lr {st['lr']}, {st['warmup_iters']} warm-up "
        f"iterations; the same seed and budget for both runs. Validation: all val frames, whole image at "
        f"{st['scale']} scale, mIoU over {st['miou_over']}; the table is the last epoch's. Pretrained = backbone "
        f"from {st['checkpoint']} (CIFAR-10, 64 px), FPN head fresh. Training wall time, both runs side by side "
        f"with one thread each: {walls or 'not measured (--skip-training)'}.\n\n"
        f"Command: `{st['command'].strip()}`\n"
    )
    if result.get("note"):
        about += f"\n{result['note']}\n"
    (output / "seg_camvid.md").write_text(
        "# CamVid, shunted_t_fpn: CIFAR-10-pretrained backbone vs from scratch\n\n"
        + about
        + "\n"
        + text
        + "\n![training curves](curves.png)\n\n![overlay](overlay.png)\n"
    )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "camvid")
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "seg_camvid")
    parser.add_argument("--work", type=Path, default=Path("/tmp/seg_camvid_runs"), help="the two run folders")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--steps", type=int, default=11, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--scale", type=float, default=0.375)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--warmup", type=int, default=10, help="linear warm-up iterations")
    parser.add_argument("--eval-interval", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="for the inference timing")
    parser.add_argument("--speed-images", type=int, default=6)
    parser.add_argument("--val-images", type=int, default=None, help="validate on the first N (smoke runs)")
    parser.add_argument("--overlay-index", type=int, default=0, help="which val.txt line to draw")
    parser.add_argument("--sequential", action="store_true", help="one run after the other")
    parser.add_argument("--skip-training", action="store_true", help="report on existing run folders")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite seg_camvid.md from seg_camvid.json"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        print(write_report(json.loads((args.output / "seg_camvid.json").read_text()), args.output))
        return 0
    args.data = args.data.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    args.output.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    seconds = {} if args.skip_training else train_both(args)
    runs = {name: load_run(args.work / name) for name in RUNS}
    plot_curves(runs, args.output / "curves.png")
    weights = args.work / "pretrained" / "last.pdparams"
    image_name = overlay_picture(args, weights, args.output / "overlay.png")
    speed = inference_speed(args, weights)
    names = runs["pretrained"]["summary"]["class_names"]
    result = {
        "setting": {
            "model": "shunted_t_fpn",
            "train_images": 367,
            "val_images": 101,
            "scale": args.scale,
            "image_size": f"{int(round(480 * args.scale))}x{int(round(360 * args.scale))} from 480x360",
            "crop": args.crop,
            "epochs": args.epochs,
            "steps_per_epoch": args.steps,
            "batch_size": args.batch_size,
            "crops_seen": args.epochs * args.steps * args.batch_size,
            "lr": args.lr,
            "warmup_iters": args.warmup,
            "schedule": "AdamW, weight decay 1e-4, poly power 1.0 per iteration",
            "miou_over": "classes present in labels or predictions (mmseg); labels at full 480x360 resolution",
            "checkpoint": str(args.checkpoint.relative_to(REPO))
            if args.checkpoint.is_relative_to(REPO)
            else str(args.checkpoint),
            "command": "python benchmarks/seg_camvid.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "class_names": names,
        "runs": {},
        "speed": speed,
        "overlay_image": image_name,
        "train_wall_s": {k: round(v, 1) for k, v in seconds.items()},
        "total_wall_s": round(time.perf_counter() - start, 1),
    }
    for name, run in runs.items():
        s = run["summary"]
        last = s["last_val"]
        result["runs"][name] = {
            "label": "CIFAR-10 pretrained" if name == "pretrained" else "from scratch",
            "miou": last["val_miou"],
            "pixel_accuracy": last["val_pixel_acc"],
            "mean_accuracy": last["val_mean_acc"],
            "class_iou": s["last_class_iou"],
            "best_miou": s["best_miou"],
            "best_epoch": s["best_epoch"],
            "curve": [{k: r.get(k) for k in ("epoch", "lr", "train_loss", "val_miou")} for r in run["rows"]],
        }
    (args.output / "seg_camvid.json").write_text(json.dumps(result, indent=2) + "\n")
    print(write_report(result, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
