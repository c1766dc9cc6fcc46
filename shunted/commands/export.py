"""Export a model for deployment: Paddle Inference (``model.json`` + ``model.pdiparams``) or ONNX (``model.onnx``).

The batch dimension stays dynamic; height and width are fixed at ``--img-size``. After writing, the export is run
on a batch of real images (sizes 1 and 3) and compared with the dygraph model; a relative error above 1e-5 fails the
command and nothing is written. ``--features`` exports the four stage maps (strides 4/8/16/32) for dense tasks.

Example:
    shunted export --model shunted_t --weights ckpt_T.pth --format onnx --output exports/shunted_t_onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export to Paddle Inference or ONNX, checked against dygraph on real images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..models.registry import list_models
    from .common import image_size, positive_int

    parser.add_argument("--model", required=True, choices=list_models(), help="variant")
    parser.add_argument("--weights", default=None, help="checkpoint (.pth / .pdparams / .safetensors)")
    parser.add_argument("--format", required=True, choices=("paddle", "onnx"), help="export format")
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="output folder: new, empty, or a previous export (replaced atomically); any other content is refused",
    )
    parser.add_argument(
        "--num-classes", type=positive_int, default=None, help="classes (default: the checkpoint's)"
    )
    parser.add_argument(
        "--img-size", type=image_size, default=224, help="input height and width (multiple of 32)"
    )
    parser.add_argument(
        "--features", action="store_true", help="export the four stage maps instead of logits"
    )
    parser.add_argument(
        "--check-images",
        type=Path,
        default=None,
        help="folder of real images for the parity check (default: the bundled CIFAR-10 demo images)",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=2, help="CPU threads for the check (default 2)"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from ..engine.export import PARITY_TOL, check_export_output, export_model, find_check_images
    from ..engine.session import open_model
    from ..fileio import check_outputs
    from ..runtime.dygraph import set_paddle_threads

    check_export_output(args.output)  # before loading anything: refuse a folder of the user's files now
    # the export replaces its folder as a whole: refuse one that holds the weights or the check images
    check_outputs(
        [],
        [("--weights", args.weights)],
        [("--check-images", args.check_images)],
        [("--output", args.output)],
    )
    if args.weights is None:
        print(
            "shunted export: WARNING: no --weights given: exporting RANDOMLY INITIALISED weights "
            "(its predictions are meaningless)",
            file=sys.stderr,
        )
    images = find_check_images(3, [args.check_images]) if args.check_images else None
    set_paddle_threads(args.threads)
    model = open_model(
        args.model, args.weights, num_classes=args.num_classes, features_only=args.features
    ).model
    info = export_model(
        model,
        args.format,
        args.output,
        args.img_size,
        model_name=args.model,
        weights=str(args.weights) if args.weights else None,
        check_images=images,
        threads=args.threads,
    )
    files = ", ".join(info.files)
    print(
        f"exported {args.model} ({args.format}, {args.img_size}×{args.img_size}, outputs: "
        f"{', '.join(info.outputs)}) to {args.output}: {files}\n"
        f"checked on {len(info.parity['images'])} real images at batch sizes "
        f"{'/'.join(map(str, info.parity['batch_sizes']))}: max rel err {info.parity['max_rel_err']:.1e} "
        f"(limit {PARITY_TOL:.0e}) vs dygraph"
    )
    return 0
