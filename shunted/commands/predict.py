"""Predict the top-k classes of images (files, folders, file lists) with class names, streamed.

  shunted predict --model shunted_s --weights ckpt_S.pth cat.jpg photos/ --topk 5
  shunted predict --model shunted_t --weights my10.pdparams --labels names.txt img.jpg --output preds.json
  shunted predict --model shunted_s --weights ckpt_S.pth --list million.txt --output preds.jsonl [--resume]

Class names: --labels imagenet (the bundled ImageNet-1k names, the default for 1,000-class weights) or a FILE
with one name per line in class-index order; by default also the names recorded beside the weights (the
`shunted convert` sidecar of the demo checkpoint, a training run's summary.json). Preprocessing is the
evaluation's (resize, centre crop).

Outputs (shunted/engine/predict.py has the details): ``--output F.jsonl`` streams one JSON line per image
(``path``, top-k ``index``/``name``/``prob``/``logit``, or ``path``/``error`` for an unreadable file), flushed
per batch, with ``F.jsonl.meta.json`` beside it; ``--resume`` continues a killed run. ``--output F.json`` is the
whole-file JSON of earlier releases. Without --output, or with F.json, the predictions are printed; with
F.jsonl only the progress (stderr) and a summary. Under ``paddle.distributed.launch`` every rank writes
``F.rank{r}.jsonl`` and rank 0 writes ``F.index.json``.
"""

from __future__ import annotations

import argparse

HELP = "top-k predictions with class names for image files, folders or file lists (streamed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_backend_arguments, add_preprocessing_arguments, nonnegative_int, positive_int

    parser.add_argument(
        "inputs", nargs="*", metavar="IMG_OR_DIR", help="image files and/or folders of images (walked sorted)"
    )
    parser.add_argument(
        "--list",
        action="append",
        default=[],
        metavar="FILE",
        dest="lists",
        help="a file of image paths, one per line (relative to its folder, or absolute); may repeat",
    )
    parser.add_argument("--model", required=True, help="variant: shunted_t, shunted_s or shunted_b")
    parser.add_argument("--weights", required=True, help="official .pth, .pdparams or .safetensors")
    parser.add_argument("--topk", type=positive_int, default=5, help="classes per image (default 5)")
    parser.add_argument("--labels", help="'imagenet' or a file of class names, one per line")
    add_preprocessing_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (default 32)")
    parser.add_argument(
        "--workers", type=nonnegative_int, default=2, help="image decoding threads (default 2; 0: none)"
    )
    parser.add_argument(
        "--output",
        metavar="F.jsonl",
        help="F.jsonl: one JSON line per image, written per batch, resumable; F.json: one JSON document",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an --output F.jsonl: skip the images already in it"
    )
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..engine.predict import PredictConfig, run_predict
    from ..engine.world import init_world

    cfg = PredictConfig(
        model=args.model,
        weights=args.weights,
        inputs=args.inputs,
        lists=args.lists,
        labels=args.labels,
        topk=args.topk,
        img_size=args.img_size,
        crop_pct=args.crop_pct,
        resize_short=args.resize_short,
        interpolation=args.interpolation,
        batch_size=args.batch_size,
        workers=args.workers,
        output=args.output,
        resume=args.resume,
        backend=args.backend,
        cache=not args.no_cache,
        threads=args.threads,
    )
    run_predict(cfg, init_world(), show=lambda text: print(text, flush=True))
    return 0
