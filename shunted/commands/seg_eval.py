"""Evaluate a segmentation checkpoint: mIoU, per-class IoU and accuracy, pixel accuracy, confusion matrix.

  shunted seg-eval --model shunted_t_fpn --weights RUN/best.pdparams --data camvid --list val.txt \
      --num-classes 11 --ignore-index 11 --output r.json [--save-masks masks/]
  shunted seg-eval ... --mode slide --crop-size 512 --stride 341     large images: a sliding window
  shunted seg-eval ... --scale 0.5                                      reduced resolution (metrics still at full)
  python -m paddle.distributed.launch --nproc_per_node 2 tools/launch.py seg-eval ...   shared by 2 processes

--data: a folder; --list: PaddleSeg file list of 'image label' lines relative to it (without --list: folder pairs
DATA/images + DATA/labels matched by name). Labels are single-channel index PNGs; --ignore-index pixels are not
counted (CamVid: 11; ADE20K after reduce_zero_label: 255). Every image is evaluated at full resolution: the whole
image (default) or a sliding window; with --scale the image is resized for the model and the logits are resized
back to the label's size. The mean IoU is over the classes present in the labels or the predictions (mmseg's
convention; the JSON's "mean_over" says so, and "miou_counting_absent_as_zero" gives PaddleSeg's value); an absent
class's IoU is null. --output writes the JSON (with the K×K confusion matrix, rows = label) atomically;
--save-masks DIR writes one index PNG per image, named after the image, at the label's size (DIR must be new,
empty, or a previous --save-masks / seg-predict folder: nothing else in it is ever replaced or deleted).
Several processes (paddle.distributed.launch): each evaluates its contiguous share of the images, process 0 sums
the confusion matrices (the one-process result) and writes; "world_size" in the JSON records how many.
"""

from __future__ import annotations

import argparse

from .common import REDUCE_ZERO_LABEL_HELP, ignore_index

HELP = "evaluate a segmentation model: mIoU, per-class IoU, pixel accuracy, confusion matrix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import (
        add_config_arguments,
        add_eval_run_arguments,
        add_inference_arguments,
        num_classes,
        positive_int,
    )

    add_config_arguments(parser, "YAML in the one schema's sections (Arch, Global.pretrained_model, "
                         "DataLoader.Eval, Infer; see seg-train's configs)")  # fmt: skip
    parser.add_argument("--model", help="shunted_t_fpn, shunted_s_fpn or shunted_b_fpn")
    parser.add_argument("--weights", help="segmentation weights (.pdparams or .safetensors)")
    parser.add_argument("--data", help="dataset folder (the --list paths are relative to it)")
    parser.add_argument(
        "--list", dest="list_file", metavar="FILE", help="PaddleSeg list of 'image label' lines"
    )
    parser.add_argument("--num-classes", type=num_classes, help="class count (default: the checkpoint's)")
    parser.add_argument("--ignore-index", type=ignore_index, help="label value not counted (default 255)")
    parser.add_argument("--reduce-zero-label", action="store_true", help=REDUCE_ZERO_LABEL_HELP)
    parser.add_argument(
        "--class-names", metavar="FILE", help="class names, one per line in index order (table and JSON)"
    )
    parser.add_argument("--output", metavar="F.json", help="write the result as JSON")
    parser.add_argument(
        "--save-masks", metavar="DIR", help="write one index PNG per image (the label's size)"
    )
    add_inference_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, help="images (or windows) per batch (default 1)")
    add_eval_run_arguments(parser)


FLAGS = {
    "data": "DataLoader.Eval.dataset.image_root",
    "list_file": "DataLoader.Eval.dataset.list",
    "ignore_index": "Arch.ignore_index",
    "reduce_zero_label": "DataLoader.Eval.dataset.reduce_zero_label",
    "workers": "DataLoader.Eval.loader.num_workers",
}


def run(args: argparse.Namespace) -> int:
    from ..engine.seg.evaluate import SegEvalConfig, evaluate_seg_checkpoint, format_table
    from .common import SEG_INFER_KEYS, eval_run, seg_inference, seg_settings

    values = seg_settings(args, {**SEG_INFER_KEYS, **FLAGS}, required=("model", "weights", "data"))
    inference = seg_inference(values, args.max_memory)
    world, fields = eval_run(args, values, "--save-masks")
    cfg = SegEvalConfig(
        **fields,
        num_classes=values["num_classes"],
        ignore_index=values["ignore_index"],
        reduce_zero_label=bool(values["reduce_zero_label"]),
        class_names=args.class_names,
        scale=values["scale"],
        inference=inference,
        cache=not args.no_cache,
        save_masks=args.save_masks,
    )
    result = evaluate_seg_checkpoint(cfg, world=world)
    if result is not None:  # rank 0 prints and writes
        print(format_table(result))
    return 0
