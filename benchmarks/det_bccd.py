"""BCCD blood-cell detection: RetinaNet on a Shunted-T backbone pretrained on CIFAR-10 vs from scratch, same budget.

Trains ``shunted_t_retinanet`` twice with ``shunted det-train`` on BCCD (../shared/data/bccd: 205 train / 87 val
blood-smear photographs, 640×480, classes RBC / WBC / Platelets, Pascal VOC, MIT licence), once with the backbone
from the bundled CIFAR-10 classification checkpoint (shunted/assets/demo/ckpt_T_cifar10_fp16.pth, a 64-px model)
and once from scratch: the same seed, schedule, steps and batch. Both runs go side by side, one process each with
one CPU thread (2 cores in all). Reduced resolution, to fit this 2-core machine:

- images resized to fit ``--img-scale`` (default 320 240: half size; RBC ≈ 50 px, platelets ≈ 20 px), flip 0.5;
- ``--epochs`` × ``--steps`` × ``--batch-size`` images per run, AdamW lr 1e-4, weight decay 1e-4, clip 35, linear
  warm-up ``--warmup`` iterations, ×0.1 after 8/12 and 11/12 of the epochs (the 1x shape);
- validation on all 87 val images at the same scale, COCO AP by pycocotools (boxes in the original pixels).

Then, with the pretrained run's final weights: per-class AP of both runs, a training-curve PNG, one val image with
the ground truth beside the predictions, and images/s of what det-predict runs per image (the network's forward,
then the same numpy decoding and NMS) in Paddle dygraph and in a PyTorch transcription (the backbone of
shunted/runtime/torch_reference.py, FPN and head written here as torch convs; same weights), interleaved image by
image on the same thread count.

    python benchmarks/det_bccd.py          # ~40 min on 2 quiet cores; writes benchmarks/results/det_bccd/
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
MODEL = "shunted_t_retinanet"


def train_argv(args, name: str) -> list[str]:
    argv = ["det-train", "--model", MODEL, "--data", str(args.data), "--list", "train.txt"]
    argv += [
        "--val-list",
        str(val_list(args)),
        "--output",
        str(args.work / name),
        "--epochs",
        str(args.epochs),
    ]
    argv += ["--batch-size", str(args.batch_size), "--img-scale", *map(str, args.img_scale)]
    argv += ["--workers", str(args.workers), "--seed", str(args.seed), "--lr", str(args.lr)]
    if args.steps:
        argv += ["--max-steps", str(args.steps)]
    overrides = [f"Optimizer.lr.warmup_iters={args.warmup}", f"Global.eval_interval={args.eval_interval}"]
    argv += [x for o in overrides for x in ("-o", o)]
    if name == "pretrained":
        argv += ["--backbone-pretrained", str(args.checkpoint)]
    return argv


def val_list(args) -> Path:
    if args.val_images is None:
        return args.data / "val.txt"
    path = args.work / f"val{args.val_images}.txt"
    path.write_text("\n".join((args.data / "val.txt").read_text().split()[: args.val_images]) + "\n")
    return path


def train_both(args) -> dict[str, float]:
    """Both runs side by side (a run folder holding a run is resumed); their wall times in seconds."""
    procs, start, seconds = {}, time.perf_counter(), {}
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for name in RUNS:
        argv = train_argv(args, name) + (["--resume"] if (args.work / name / "last.pdckpt").exists() else [])
        log = open(args.work / f"{name}.log", "w")  # noqa: SIM115 — closed when the process ends
        procs[name] = (
            subprocess.Popen([sys.executable, "-m", "shunted", *argv], stdout=log, stderr=log, env=env),
            log,
        )
        print(f"started {name}: shunted {' '.join(argv)}", flush=True)
    for name, (proc, log) in procs.items():
        proc.wait()
        log.close()
        seconds[name] = time.perf_counter() - start
        if proc.returncode:
            tail = (args.work / f"{name}.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"the {name} run failed (exit {proc.returncode}):\n{tail}")
    return seconds


def plot_curves(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in runs.items():
        ax1.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], marker=".", label=name)
        val = [r for r in rows if r.get("val_ap") is not None]
        ax2.plot([r["epoch"] for r in val], [r["val_ap50"] for r in val], marker="o", label=f"{name} AP50")
        ax2.plot(
            [r["epoch"] for r in val], [r["val_ap"] for r in val], marker="x", ls="--", label=f"{name} AP"
        )
    ax1.set(xlabel="epoch", ylabel="train loss (focal + L1)", title=f"{MODEL} on BCCD: training")
    ax2.set(xlabel="epoch", ylabel="val COCO AP (%)", title="validation")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def picture(args, weights: Path, path: Path) -> str:
    """One val image: ground truth (left) and the pretrained run's detections ≥ 0.3 (right), each with a legend."""
    from PIL import Image, ImageDraw

    from shunted.data.det_datasets import list_det_samples
    from shunted.data.det_transforms import DetTransform
    from shunted.engine.det.evaluate import open_det_model, to_results
    from shunted.engine.det.predict import DetImages, class_colours, draw_detections
    from shunted.models.retinanet import postprocess_outputs

    samples = list_det_samples(args.data, "val.txt")
    i = args.picture_index
    opened = open_det_model(MODEL, weights)
    names, colours = samples.class_names, class_colours(len(samples.class_names))
    images = DetImages([samples.images[i]], DetTransform(img_scale=tuple(args.img_scale)))
    x, _, _, info = images[0]
    h, w = x.shape[1:]
    padded = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    padded[0, :, :h, :w] = x
    cls, reg = opened.predictor(padded)
    det = postprocess_outputs(cls, reg, padded.shape[2:], [info["image_shape"]])[0]
    found = [
        {
            "class_id": r["category_id"],
            "score": r["score"],
            "box": [r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]],
        }
        for r in to_results(det, info, 0, list(range(len(names))))
        if r["score"] >= 0.3
    ]
    truth = [
        {"class_id": int(c), "score": 1.0, "box": [float(v) for v in b]}
        for b, c in zip(samples.boxes[i], samples.labels[i], strict=True)
    ]
    image = Image.open(samples.images[i]).convert("RGB")
    left, right = draw_detections(image, truth, names, colours), draw_detections(image, found, names, colours)
    out = Image.new("RGB", (left.width + right.width, max(left.height, right.height) + 22), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for k, (pic, title) in enumerate(
        ((left, "ground truth"), (right, "prediction (CIFAR-10-pretrained backbone, score >= 0.3)"))
    ):
        out.paste(pic, (k * left.width, 22))
        draw.text((k * left.width + 4, 4), title, fill=(0, 0, 0))
    out.save(path)
    return samples.relative(i)


def torch_retinanet(model):
    """A PyTorch transcription of ``model`` (same weights): torch_reference's backbone, FPN and head as convs."""
    import torch
    import torch.nn.functional as F

    from shunted.convert.mapping import paddle_to_torch
    from shunted.models.weights import state_dict_numpy
    from shunted.runtime import torch_reference

    state = state_dict_numpy(model)
    backbone = torch_reference.build("shunted_t", num_classes=1000)
    official = paddle_to_torch(
        {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    )
    missing = backbone.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official.items()}, strict=False
    )
    assert set(missing.missing_keys) <= {"head.weight", "head.bias"} and not missing.unexpected_keys, missing
    backbone.eval()
    w = {k: torch.from_numpy(v) for k, v in state.items() if not k.startswith("backbone.")}

    def conv(x, name, stride=1, relu=False):
        y = F.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"], stride, w[f"{name}.weight"].shape[-1] // 2)
        return torch.relu(y) if relu else y

    def flat(x, width):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, width)

    def run(x):
        maps = backbone.forward_stages(x)[1:]
        lat = [conv(maps[i], f"neck.lateral_convs.{i}.conv") for i in range(3)]
        for i in (2, 1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        feats = [conv(lat[i], f"neck.fpn_convs.{i}.conv") for i in range(3)]
        feats.append(conv(maps[-1], "neck.fpn_convs.3.conv", 2))
        feats.append(conv(feats[-1], "neck.fpn_convs.4.conv", 2))
        cls, reg = [], []
        for f in feats:
            c, r = f, f
            for i in range(4):
                c = conv(c, f"bbox_head.cls_convs.{i}.conv", relu=True)
                r = conv(r, f"bbox_head.reg_convs.{i}.conv", relu=True)
            cls.append(flat(conv(c, "bbox_head.retina_cls"), model.num_classes))
            reg.append(flat(conv(r, "bbox_head.retina_reg"), 4))
        return torch.cat(cls, 1), torch.cat(reg, 1)

    return run


def inference_speed(args, weights: Path) -> dict:
    """Images/s of det-predict's per-image work (forward + the numpy decoding), Paddle vs PyTorch, interleaved."""
    import paddle
    import torch

    from shunted import create_model
    from shunted.data.det_datasets import list_det_samples
    from shunted.data.det_transforms import DetTransform
    from shunted.engine.det.predict import DetImages
    from shunted.models.retinanet import postprocess_outputs

    paddle.base.core.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    model = create_model(MODEL, pretrained=str(weights))
    model.eval()
    reference = torch_retinanet(model)
    samples = list_det_samples(args.data, "val.txt")
    images = DetImages(samples.images[: args.speed_images], DetTransform(img_scale=tuple(args.img_scale)))
    times, worst = {"paddle": [], "torch": []}, 0.0
    items = [images[i] for i in range(len(images))]
    for k, (x, _, _, info) in enumerate(items + items[:1]):  # the first image twice: its first pass warms up
        h, w = x.shape[1:]
        batch = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
        batch[0, :, :h, :w] = x
        t0 = time.perf_counter()
        with paddle.no_grad():
            a = [o.numpy() for o in model(paddle.to_tensor(batch))]
        postprocess_outputs(*a, batch.shape[2:], [info["image_shape"]])
        t1 = time.perf_counter()
        with torch.no_grad():
            b = [o.numpy() for o in reference(torch.from_numpy(batch))]
        postprocess_outputs(*b, batch.shape[2:], [info["image_shape"]])
        t2 = time.perf_counter()
        if k > 0:
            times["paddle"].append(t1 - t0)
            times["torch"].append(t2 - t1)
        worst = max(
            worst,
            *(float(np.abs(p - q).max() / (np.abs(q).max() + 1e-12)) for p, q in zip(a, b, strict=True)),
        )
    return {
        "input": f"{batch.shape[3]}x{batch.shape[2]}",
        "images": len(times["paddle"]),
        "paddle_img_s": round(1.0 / float(np.median(times["paddle"])), 3),
        "torch_img_s": round(1.0 / float(np.median(times["torch"])), 3),
        "max_rel_diff_outputs": worst,
        "threads": args.threads,
    }


def _pct(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def table(result: dict) -> str:
    runs = result["runs"]
    lines = ["| backbone init | val AP | AP50 | AP75 | " + " | ".join(f"AP {n}" for n in result["class_names"]) + " | train wall |",
             "|---|---|---|---|" + "---|" * len(result["class_names"]) + "---|"]  # fmt: skip
    for name, r in runs.items():
        wall = result["train_wall_s"].get(name)
        lines.append(
            f"| {r['label']} | {_pct(r['ap'])} | {_pct(r['ap50'])} | {_pct(r['ap75'])} | "
            + " | ".join(_pct(r["class_ap"].get(n)) for n in result["class_names"])
            + f" | {'—' if wall is None else f'{wall / 60:.1f} min'} |"
        )
    s = result.get("speed")
    if s:
        lines += ["", f"| det-predict per image ({s['input']}, {s['threads']} threads) | Paddle dygraph img/s | PyTorch img/s | "
                  "Paddle / PyTorch | max rel. output diff |", "|---|---|---|---|---|",
                  f"| forward + decoding + NMS | {s['paddle_img_s']} | {s['torch_img_s']} | "
                  f"{s['paddle_img_s'] / s['torch_img_s']:.2f}× | {s['max_rel_diff_outputs']:.1e} |"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "bccd")
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "det_bccd")
    parser.add_argument("--work", type=Path, default=Path("/tmp/det_bccd_runs"), help="the two run folders")
    parser.add_argument("--img-scale", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per epoch (default: all, 102 at batch 2)"
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up iterations")
    parser.add_argument("--eval-interval", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="for the inference timing")
    parser.add_argument("--speed-images", type=int, default=6)
    parser.add_argument("--val-images", type=int, default=None, help="validate on the first N (smoke runs)")
    parser.add_argument("--picture-index", type=int, default=0, help="which val image to draw")
    parser.add_argument("--skip-training", action="store_true", help="report on existing run folders")
    args = parser.parse_args(argv)
    args.data = args.data.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    args.output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    seconds = {} if args.skip_training else train_both(args)
    rows = {n: json.loads((args.work / n / "metrics.json").read_text()) for n in RUNS}
    summaries = {n: json.loads((args.work / n / "summary.json").read_text()) for n in RUNS}
    plot_curves(rows, args.output / "curves.png")
    weights = args.work / "pretrained" / "last.pdparams"
    shown = picture(args, weights, args.output / "predictions.png")
    speed = inference_speed(args, weights)
    s0 = summaries["pretrained"]
    result = {
        "setting": {
            "model": MODEL,
            "img_scale": args.img_scale,
            "epochs": args.epochs,
            "steps_per_epoch": s0["steps_per_epoch"],
            "batch_size": args.batch_size,
            "images_seen": args.epochs * s0["steps_per_epoch"] * args.batch_size,
            "lr": args.lr,
            "warmup_iters": args.warmup,
            "lr_steps": s0["lr_steps"],
            "checkpoint": str(args.checkpoint.relative_to(REPO))
            if args.checkpoint.is_relative_to(REPO)
            else str(args.checkpoint),
            "command": "python benchmarks/det_bccd.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "load_average": os.getloadavg(),
        },
        "class_names": s0["class_names"],
        "runs": {},
        "speed": speed,
        "picture_image": shown,
        "train_wall_s": {k: round(v, 1) for k, v in seconds.items()},
        "total_wall_s": round(time.perf_counter() - start, 1),
    }
    for name in RUNS:
        s = summaries[name]
        last = s["last_val"] or {}
        result["runs"][name] = {
            "label": "CIFAR-10 pretrained" if name == "pretrained" else "from scratch",
            "ap": last.get("val_ap"), "ap50": last.get("val_ap50"), "ap75": last.get("val_ap75"),
            "class_ap": s.get("last_class_ap") or {}, "best_ap": s.get("best_ap"), "best_epoch": s.get("best_epoch"),
            "curve": [{k: r.get(k) for k in ("epoch", "lr", "train_loss", "val_ap", "val_ap50")} for r in rows[name]],
        }  # fmt: skip
    (args.output / "det_bccd.json").write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    (args.output / "det_bccd.md").write_text(
        f"# BCCD, {MODEL}: CIFAR-10-pretrained backbone vs from scratch\n\nSetting: {json.dumps(result['setting'])}\n\n"
        + text + "\n![curves](curves.png)\n\n![predictions](predictions.png)\n"
    )  # fmt: skip
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
