"""Detect objects in images: the boxes drawn with class names and scores, and a JSON of the detections.

  shunted det-predict --model shunted_t_retinanet --weights RUN/best.pdparams smear.jpg photos/ --output-dir det/ \
      --class-names label_list.txt [--score-threshold 0.3] [--img-scale 1333 800]

For each input IMAGE.ext the output folder gets IMAGE_det.jpg (.png for non-JPEG inputs): the image with every
detection scoring at least --score-threshold drawn in its class's colour with the class name and score, above a
legend of the classes found and their counts; and det_outputs.json: what was run and, per image, the detections
(class, score, box [x1, y1, x2, y2] in the image's pixels). Two inputs with one name would overwrite each other:
refused. The folder must be new, empty, or a previous det-predict output: nothing else in it is ever replaced or
deleted. --class-names: one name per line in class order (a VOC label_list.txt); default "class 0", "class 1"...
Under paddle.distributed.launch each process draws its contiguous share of the images; process 0 writes the JSON.
"""

from __future__ import annotations

import argparse

HELP = "detect objects in images: boxes drawn with names and scores, a JSON of the detections"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_backend_arguments, fraction, positive_int

    parser.add_argument(
        "inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images"
    )
    parser.add_argument(
        "--model", required=True, help="shunted_t_retinanet, shunted_s_retinanet or shunted_b_retinanet"
    )
    parser.add_argument("--weights", required=True, help="detection weights (.pdparams or .safetensors)")
    parser.add_argument(
        "--output-dir", required=True, metavar="DIR", help="folder for the pictures and the JSON"
    )
    parser.add_argument("--class-names", metavar="FILE", help="class names, one per line in class order")
    parser.add_argument(
        "--score-threshold",
        type=fraction,
        default=0.3,
        help="draw and list detections scoring at least this (0.3)",
    )
    parser.add_argument(
        "--img-scale", type=positive_int, nargs=2, default=(1333, 800), metavar=("W", "H"),
        help="resize keeping the ratio to fit W x H (default 1333 800)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..engine.det.predict import DetPredictConfig, detect_images, format_summary
    from ..engine.world import init_world, threads_per_process

    world = init_world()
    cfg = DetPredictConfig(
        inputs=args.inputs,
        output_dir=args.output_dir,
        model=args.model,
        weights=args.weights,
        class_names=args.class_names,
        score_threshold=args.score_threshold,
        img_scale=tuple(args.img_scale),
        backend=args.backend,
        threads=args.threads if args.threads is not None else threads_per_process(world),
        progress=not args.no_progress,
    )
    manifest = detect_images(cfg, world=world)
    if manifest is not None:  # rank 0 prints
        print(format_summary(manifest, args.output_dir))
    return 0
