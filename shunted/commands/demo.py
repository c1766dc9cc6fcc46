"""The demo: a real checkpoint of the official code, converted and evaluated, next to the official result.

The bundled checkpoint is shunted_t trained with the official PyTorch code on CIFAR-10 at 64×64 (float16).
The demo converts it to .pdparams (no torch involved), evaluates it on the bundled CIFAR-10 test subset (100
images per class) with the official preprocessing scaled to 64 px (resize 73, centre crop 64), prints top-1 and
top-5 next to what the official code gives on the same images (``assets/cifar10-demo/expected.json``, recomputed
by ``tools/compute_demo_reference.py``), and predicts a few images with class names. Outputs go to --output-dir.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

HELP = (
    "convert the bundled CIFAR-10 checkpoint, evaluate it next to the official result, predict a few images"
)

MODEL = "shunted_t"
IMG_SIZE, RESIZE_SHORT = 64, 73  # int(256 / 224 * 64) = 73
PREDICT_EXAMPLES = ("airplane/0000.jpg", "cat/0000.jpg", "horse/0000.jpg", "ship/0000.jpg", "truck/0000.jpg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import nonnegative_int, positive_int

    parser.add_argument(
        "--output-dir", default="outputs/demo", help="where to write outputs (default outputs/demo)"
    )
    parser.add_argument(
        "--workers", type=nonnegative_int, default=2, help="image decoding threads (default 2)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=100, help="images per batch (default 100)")


def assets() -> Path:
    return Path(str(resources.files("shunted").joinpath("assets")))


def run(args: argparse.Namespace) -> int:
    from ..convert import convert_file, sidecar_path
    from ..data.transforms import EvalTransform
    from ..engine.evaluate import EvalConfig, evaluate_checkpoint, format_table
    from ..engine.predict import format_predictions, predict
    from ..engine.session import open_model
    from ..fileio import check_output_dir, check_outputs
    from ..models import get_pretrained_cfg

    start = time.perf_counter()
    check_output_dir(args.output_dir)
    checkpoint = assets() / "demo" / "ckpt_T_cifar10_fp16.pth"
    subset = assets() / "cifar10-demo"
    expected = json.loads((subset / "expected.json").read_text())
    out = Path(args.output_dir)
    pdparams, evaluation = out / "shunted_t_cifar10.pdparams", out / "eval.json"
    check_outputs(
        [(None, pdparams), (None, sidecar_path(pdparams)), (None, evaluation)],
        [(None, checkpoint)],
        [(None, subset)],
    )
    out.mkdir(parents=True, exist_ok=True)

    print(f"1. convert {checkpoint.name} (official PyTorch layout, float16) without torch")
    info = convert_file(checkpoint, pdparams)
    print(f"   → {pdparams}: {info['variant']}, {info['num_classes']} classes, {info['num_tensors']} tensors")

    print(
        f"2. evaluate on {expected['n_images']:,} CIFAR-10 test images ({subset.name}, {IMG_SIZE} px, resize {RESIZE_SHORT})"
    )
    opened = open_model(MODEL, pdparams)  # built once, for the evaluation and the predictions
    cfg = EvalConfig(
        MODEL,
        pdparams,
        subset,
        img_size=IMG_SIZE,
        resize_short=RESIZE_SHORT,
        batch_size=args.batch_size,
        workers=args.workers,
        output=evaluation,
    )
    result = evaluate_checkpoint(cfg, opened=opened)
    print(format_table(result))
    print()
    print(comparison_table(result, expected))

    print(f"\n3. predict {len(PREDICT_EXAMPLES)} images")
    transform = EvalTransform.from_config(
        get_pretrained_cfg(MODEL), img_size=IMG_SIZE, resize_short=RESIZE_SHORT
    )
    paths = [subset / p for p in PREDICT_EXAMPLES]
    preds = predict(paths, transform, opened.predictor, topk=3, class_names=expected["classes"])
    for p in preds:
        p["path"] = Path(p["path"]).relative_to(subset).as_posix()
    print(format_predictions(preds))
    same = result["top1"]["correct"] == expected["top1_correct"]
    print(
        f"\ntop-1 {'matches' if same else 'DIFFERS FROM'} the official code; done in {time.perf_counter() - start:.0f} s"
    )
    return 0 if same else 1


def comparison_table(result: dict, expected: dict) -> str:
    n = result["n"]
    rows = [
        ("", "top-1", "top-5"),
        (
            "this port (Paddle)",
            f"{result['top1']['percent']:.2f} % ({result['top1']['correct']} / {n})",
            f"{result['top5']['percent']:.2f} % ({result['top5']['correct']} / {n})",
        ),
        (
            "official code (PyTorch)",
            f"{expected['top1']:.2f} % ({expected['top1_correct']} / {expected['n_images']})",
            f"{expected['top5']:.2f} % ({expected['top5_correct']} / {expected['n_images']})",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
