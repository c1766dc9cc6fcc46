"""Predict the top-k classes of images (files or folders) with class names.

  shunted predict --model shunted_s --weights ckpt_S.pth cat.jpg photos/ --topk 5
  shunted predict --model shunted_t --weights my10.pdparams --labels names.txt img.jpg --output preds.json

Class names: --labels imagenet (the bundled ImageNet-1k names, the default for 1,000-class weights) or a FILE
with one name per line in class-index order; by default also the names recorded beside the weights (the
`shunted convert` sidecar of the demo checkpoint, a training run's summary.json). Preprocessing is the
evaluation's (resize, centre crop).
"""

from __future__ import annotations

import argparse
import os

HELP = "top-k predictions with class names for image files or folders"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_backend_arguments, add_preprocessing_arguments, positive_int

    parser.add_argument(
        "inputs", nargs="+", metavar="IMG_OR_DIR", help="image files and/or folders of images"
    )
    parser.add_argument("--model", required=True, help="variant: shunted_t, shunted_s or shunted_b")
    parser.add_argument("--weights", required=True, help="official .pth, .pdparams or .safetensors")
    parser.add_argument("--topk", type=positive_int, default=5, help="classes per image (default 5)")
    parser.add_argument("--labels", help="'imagenet' or a file of class names, one per line")
    add_preprocessing_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (default 32)")
    parser.add_argument("--output", metavar="F.json", help="write the predictions as JSON")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..data.classnames import known_class_names, resolve_class_names
    from ..data.transforms import EvalTransform
    from ..engine.predict import expand_inputs, format_predictions, predict
    from ..engine.session import open_model
    from ..errors import ShuntedError
    from ..fileio import check_output_file, check_outputs, write_json_atomic
    from ..models import get_pretrained_cfg

    if args.topk < 1:
        raise ShuntedError(f"--topk {args.topk}: must be at least 1")
    if args.output:
        check_output_file(args.output)
    try:
        cfg = get_pretrained_cfg(args.model)
    except ValueError as exc:
        raise ShuntedError(f"--model: {exc}") from None
    paths = expand_inputs(args.inputs)
    # an output that is an input image (or the weights, the labels) or an image in an input folder: refused now
    check_outputs(
        [("--output", args.output)],
        [("--weights", args.weights), ("--labels", args.labels), *((None, p) for p in args.inputs)],
        data=[(None, p) for p in args.inputs if os.path.isdir(p)],
    )
    transform = EvalTransform.from_config(
        cfg,
        img_size=args.img_size,
        crop_pct=args.crop_pct,
        resize_short=args.resize_short,
        interpolation=args.interpolation,
    )
    opened = open_model(args.model, args.weights, args.backend, args.threads, img_size=transform.img_size)
    names = resolve_class_names(args.labels, opened.num_classes)
    known = None  # names recorded beside the weights (convert sidecar, training run, the bundled demo)
    if names is None:
        known = known_class_names(args.weights, opened.num_classes, sha256=opened.weights_sha256)
        names = list(known.names) if known and len(known.names) == opened.num_classes else None
    results = predict(paths, transform, opened.predictor, args.topk, names, args.batch_size)
    print(format_predictions(results))
    if args.output:
        write_json_atomic(
            args.output,
            {
                "model": args.model,
                "weights": {"path": str(args.weights), "sha256": opened.weights_sha256},
                "num_classes": opened.num_classes,
                "labels": args.labels or (known.source if known and names else "imagenet" if names else None),
                "preprocessing": transform.describe(),
                "predictions": results,
            },
        )
    return 0
