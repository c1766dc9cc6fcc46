"""Evaluate a segmentation checkpoint: mIoU, per-class IoU and accuracy, pixel accuracy, confusion matrix.

  shunted seg-eval --model shunted_t_fpn --weights RUN/best.pdparams --data camvid --list val.txt \
      --num-classes 11 --ignore-index 11 --output r.json [--save-masks masks/]
  shunted seg-eval ... --mode slide --crop-size 512 --stride 341     large images: a sliding window
  shunted seg-eval ... --scale 0.5                                      reduced resolution (metrics still at full)

--data: a folder; --list: PaddleSeg file list of 'image label' lines relative to it (without --list: folder pairs
DATA/images + DATA/labels matched by name). Labels are single-channel index PNGs; --ignore-index pixels are not
counted (CamVid: 11; ADE20K after reduce_zero_label: 255). Every image is evaluated at full resolution: the whole
image (default) or a sliding window; with --scale the image is resized for the model and the logits are resized
back to the label's size. The mean IoU is over the classes present in the labels or the predictions (mmseg's
convention; the JSON's "mean_over" says so, and "miou_counting_absent_as_zero" gives PaddleSeg's value); an absent
class's IoU is null. --output writes the JSON (with the K×K confusion matrix, rows = label) atomically;
--save-masks DIR writes one index PNG per image, named after the image, at the label's size (DIR must be new,
empty, or a previous --save-masks / seg-predict folder: nothing else in it is ever replaced or deleted).
"""

from __future__ import annotations

import argparse

from .common import REDUCE_ZERO_LABEL_HELP, _int, ignore_index

HELP = "evaluate a segmentation model: mIoU, per-class IoU, pixel accuracy, confusion matrix"

MAX_CROP = 2048


def pair(text: str) -> tuple[int, int]:
    """``S`` or ``HxW``: a window size in pixels (32 .. MAX_CROP)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r}: give S or HxW, e.g. 512 or 512x1024")
    values = tuple(_int(p) for p in parts)
    for v in values:
        if not 32 <= v <= MAX_CROP:
            raise argparse.ArgumentTypeError(f"{text!r}: each side must be between 32 and {MAX_CROP} pixels")
    return (values[0], values[-1])


def stride_pair(text: str) -> tuple[int, int]:
    """``S`` or ``HxW``: a window step in pixels (>= 1)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r}: give S or HxW, e.g. 341 or 341x682")
    values = tuple(_int(p) for p in parts)
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1 pixel")
    return (values[0], values[-1])


def scale(text: str) -> float:
    """A resize factor in (0, 4]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 4:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text} must be a factor in (0, 4], e.g. 0.5")
    return value


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """--scale, --mode, --crop-size, --stride (seg-eval and seg-predict)."""
    parser.add_argument(
        "--scale", type=scale, help="resize the image by this factor for the model (default 1)"
    )
    parser.add_argument(
        "--mode",
        choices=("whole", "slide"),
        default="whole",
        help="whole image at once (default), or a sliding window (--crop-size, --stride)",
    )
    parser.add_argument("--crop-size", type=pair, metavar="S|HxW", help="sliding window size (--mode slide)")
    parser.add_argument(
        "--stride", type=stride_pair, metavar="S|HxW", help="sliding window step (default 2/3 of the crop)"
    )


def check_inference_arguments(args: argparse.Namespace) -> None:
    from ..errors import ShuntedError

    if args.mode == "slide" and args.crop_size is None:
        raise ShuntedError("--mode slide needs --crop-size")
    if args.mode != "slide" and (args.crop_size is not None or args.stride is not None):
        raise ShuntedError("--crop-size and --stride are for --mode slide")
    if args.stride is not None and (args.stride[0] > args.crop_size[0] or args.stride[1] > args.crop_size[1]):
        raise ShuntedError(
            f"--stride {args.stride[0]}x{args.stride[1]}: larger than --crop-size, the windows would leave gaps"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_backend_arguments, nonnegative_int, num_classes, positive_int

    parser.add_argument("--model", required=True, help="shunted_t_fpn, shunted_s_fpn or shunted_b_fpn")
    parser.add_argument("--weights", required=True, help="segmentation weights (.pdparams or .safetensors)")
    parser.add_argument("--data", required=True, help="dataset folder (the --list paths are relative to it)")
    parser.add_argument(
        "--list", dest="list_file", metavar="FILE", help="PaddleSeg list of 'image label' lines"
    )
    parser.add_argument("--num-classes", type=num_classes, help="class count (default: the checkpoint's)")
    parser.add_argument(
        "--ignore-index", type=ignore_index, default=255, help="label value not counted (default 255)"
    )
    parser.add_argument("--reduce-zero-label", action="store_true", help=REDUCE_ZERO_LABEL_HELP)
    parser.add_argument(
        "--class-names", metavar="FILE", help="class names, one per line in index order (table and JSON)"
    )
    parser.add_argument("--output", metavar="F.json", help="write the result as JSON")
    parser.add_argument(
        "--save-masks", metavar="DIR", help="write one index PNG per image (the label's size)"
    )
    add_inference_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=1, help="images (or windows) per batch")
    parser.add_argument(
        "--workers",
        type=nonnegative_int,
        default=2,
        help="decoding worker processes (default 2; 0 in-process)",
    )
    parser.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..engine.seg.evaluate import evaluate_seg_checkpoint, format_table

    check_inference_arguments(args)
    result = evaluate_seg_checkpoint(
        args.model,
        args.weights,
        args.data,
        list_file=args.list_file,
        num_classes=args.num_classes,
        ignore_index=args.ignore_index,
        reduce_zero_label=args.reduce_zero_label,
        output=args.output,
        save_masks=args.save_masks,
        backend=args.backend,
        cache=not args.no_cache,
        threads=args.threads,
        batch_size=args.batch_size,
        workers=args.workers,
        scale=args.scale,
        mode=args.mode,
        crop_size=args.crop_size,
        stride=args.stride,
        limit=args.limit,
        progress=not args.no_progress,
        class_names=args.class_names,
    )
    print(format_table(result))
    return 0
