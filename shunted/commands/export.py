"""Export a model for deployment: Paddle Inference (``model.json`` + ``model.pdiparams``) or ONNX (``model.onnx``).

The batch dimension stays dynamic; height and width are fixed at ``--img-size``. After writing, the export is run
on a batch of real images (sizes 1 and 3) and compared with the dygraph model; a relative error above 1e-5 fails the
command and nothing is written. ``--features`` exports the four stage maps (strides 4/8/16/32) for dense tasks.

A segmentation model (``shunted_t_fpn`` …, weights written by ``seg-train``) exports its N×K×H×W logits with a
dynamic height and width: the runtimes take any size (padded to a multiple of 32 and cropped back, as the dygraph
model does). ``--img-size H W`` (default 512 512) is where the parity check runs; it also runs at (H + 32, W + 64)
and (H + 13, W + 7).

Examples:
    shunted export --model shunted_t --weights ckpt_T.pth --format onnx --output exports/shunted_t_onnx
    shunted export --model shunted_t_fpn --weights runs/seg/best.pdparams --format paddle --output exports/seg
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export to Paddle Inference or ONNX, checked against dygraph on real images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..models.registry import list_det_models, list_models, list_seg_models
    from .common import image_size, positive_int

    parser.add_argument(
        "--model",
        required=True,
        choices=list_models() + list_seg_models() + list_det_models(),
        help="variant (or segmentation / detection model)",
    )
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
        "--img-size",
        type=image_size,
        nargs="+",
        metavar="S",
        default=None,
        help="input size S (multiple of 32; default 224); a segmentation model: S or H W, where the parity "
        "check runs (default 512 512; its export takes any size)",
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

    from ..engine.export import PARITY_TOL, ParityCheck, check_export_output, export_model, find_check_images
    from ..engine.session import open_model
    from ..errors import ShuntedError
    from ..fileio import check_outputs
    from ..models.registry import SEG_INPUT_SIZE, is_det_model, is_seg_model
    from ..runtime.dygraph import set_paddle_threads

    seg = is_seg_model(args.model) or is_det_model(args.model)  # both export a dynamic H × W
    sizes = args.img_size or (list(SEG_INPUT_SIZE[1:]) if seg else [224])
    if len(sizes) > (2 if seg else 1):
        raise ShuntedError(
            f"--img-size {' '.join(map(str, sizes))}: give "
            + ("S or H W" if seg else "one size S (a classification export is square)")
        )
    img_size = (sizes[0], sizes[-1]) if seg else sizes[0]
    if seg and args.features:
        raise ShuntedError(f"--features: exports a classification backbone's stage maps, not {args.model}")
    if seg and args.weights is None and args.num_classes is None:
        raise ShuntedError(
            f"--num-classes: needed for {args.model} without --weights (the head's class count)"
        )
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
        img_size,
        model_name=args.model,
        weights=str(args.weights) if args.weights else None,
        check=ParityCheck(images=images, threads=args.threads),
    )
    files = ", ".join(info.files)
    if seg:
        shape = (
            "any H×W, multiples of 32" if is_det_model(args.model) else "any H×W (padded to a multiple of 32)"
        )
        checked = " and ".join("×".join(map(str, s)) for s in info.parity["sizes"])
        checked = f"at {checked}, batch sizes {'/'.join(map(str, info.parity['batch_sizes']))} at the first"
        errors = f"max abs err {info.parity['max_abs_err']:.1e}, "
    else:
        shape = f"{img_size}×{img_size}"
        checked = f"at batch sizes {'/'.join(map(str, info.parity['batch_sizes']))}"
        errors = ""
    print(
        f"exported {args.model} ({args.format}, {shape}, outputs: "
        f"{', '.join(info.outputs)}) to {args.output}: {files}\n"
        f"checked on {len(info.parity['images'])} real images {checked}: {errors}max rel err "
        f"{info.parity['max_rel_err']:.1e} (limit {PARITY_TOL:.0e}) vs dygraph"
    )
    return 0
