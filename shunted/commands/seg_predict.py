"""Segment images: an index mask, a colour mask with a legend and an overlay per image.

  shunted seg-predict --model shunted_t_fpn --weights RUN/best.pdparams street.jpg frames/ --output-dir seg/ \
      --palette camvid

For each input IMAGE.ext the output folder gets IMAGE.png (8-bit index mask, the input's size), IMAGE_color.png
(the mask in colour above a legend naming the classes present), IMAGE_overlay.jpg (.png for non-JPEG inputs; the
colour mask blended on the image, the input's size) and seg_outputs.json (what was run, per image the classes
present). Two inputs with one name would overwrite each other: refused. The folder must be new, empty, or a
previous output of seg-predict / seg-eval --save-masks: nothing else in it is ever replaced or deleted.

Palettes: voc (default, the Pascal VOC colour map PaddleSeg and mmseg use) or camvid (SegNet's CamVid colours;
with 11 classes also CamVid's class names). --class-names FILE: one name per line in class-index order.
"""

from __future__ import annotations

import argparse

HELP = "segment images: index mask, colour mask with legend, overlay"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_backend_arguments, fraction, num_classes, positive_int
    from .seg_eval import add_inference_arguments

    parser.add_argument(
        "inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images"
    )
    parser.add_argument("--model", required=True, help="shunted_t_fpn, shunted_s_fpn or shunted_b_fpn")
    parser.add_argument("--weights", required=True, help="segmentation weights (.pdparams or .safetensors)")
    parser.add_argument(
        "--output-dir", required=True, metavar="DIR", help="folder for the masks and overlays"
    )
    parser.add_argument("--num-classes", type=num_classes, help="class count (default: the checkpoint's)")
    parser.add_argument("--class-names", metavar="FILE", help="class names, one per line in index order")
    # the names of shunted/engine/seg/palette.py PALETTES, written out: --help must not import numpy
    parser.add_argument(
        "--palette", choices=("voc", "camvid"), default="voc", help="mask colours (default voc)"
    )
    parser.add_argument(
        "--alpha", type=fraction, default=0.5, help="weight of the colour mask in the overlay (default 0.5)"
    )
    add_inference_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=1, help="windows per batch (--mode slide)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..engine.seg.predict import format_summary, segment_images
    from .seg_eval import check_inference_arguments

    check_inference_arguments(args)
    manifest = segment_images(
        args.inputs,
        args.output_dir,
        args.model,
        args.weights,
        num_classes=args.num_classes,
        class_names=args.class_names,
        palette=args.palette,
        alpha=args.alpha,
        backend=args.backend,
        cache=not args.no_cache,
        threads=args.threads,
        scale=args.scale,
        mode=args.mode,
        crop_size=args.crop_size,
        stride=args.stride,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    print(format_summary(manifest, args.output_dir))
    return 0
