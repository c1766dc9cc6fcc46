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
Under paddle.distributed.launch each process segments its contiguous share of the images into the folder; process
0 writes the manifest.
"""

from __future__ import annotations

import argparse

HELP = "segment images: index mask, colour mask with legend, overlay"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_backend_arguments, add_inference_arguments, fraction, num_classes, positive_int

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
    from ..engine.seg.predict import SegPredictConfig, format_summary, segment_images
    from ..engine.world import init_world, threads_per_process
    from .common import seg_inference

    inference = seg_inference(args)
    world = init_world()
    cfg = SegPredictConfig(
        inputs=args.inputs,
        output_dir=args.output_dir,
        model=args.model,
        weights=args.weights,
        num_classes=args.num_classes,
        class_names=args.class_names,
        palette=args.palette,
        alpha=args.alpha,
        scale=args.scale,
        inference=inference,
        backend=args.backend,
        cache=not args.no_cache,
        threads=args.threads if args.threads is not None else threads_per_process(world),
        progress=not args.no_progress,
    )
    manifest = segment_images(cfg, world=world)
    if manifest is not None:  # rank 0 prints
        print(format_summary(manifest, args.output_dir))
    return 0
