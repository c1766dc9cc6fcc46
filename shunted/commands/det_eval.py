"""Evaluate an object detector: COCO metrics (pycocotools) on VOC or COCO data.

  shunted det-eval --model shunted_t_retinanet --weights RUN/best.pdparams --data bccd --list val.txt \
      --output r.json [--save-detections dets.json] [--img-scale 1333 800]
  shunted det-eval --data bccd --list val.txt --detections dets.json     score a saved results file, no model
  python -m paddle.distributed.launch --nproc_per_node 2 tools/launch.py det-eval ...   shared by 2 processes

--data: the dataset folder. --list: a VOC list (image ids: JPEGImages/ID.jpg + Annotations/ID.xml, or 'image xml'
pairs; the class order is label_list.txt beside the list or in --data, or --label-list) or a COCO JSON file (its
file_name paths relative to --data). Images are resized keeping their ratio to fit --img-scale W H (default 1333
800, as in training) and padded to a multiple of 32. The figures (percent): AP (IoU .50:.95), AP50, AP75, AP
small / medium / large, AR@100 and AP per class. --output writes them as JSON (ap, ap50, ap75, ap_small,
ap_medium, ap_large, ar100, class_ap, images, ...); --save-detections writes the detections in the COCO results
format (image_id, category_id, bbox [x, y, w, h] in the original image's pixels, score); for VOC data image_id is
the image's 0-based position in the list and category_id its class's 1-based position in label_list.txt.
-c FILE / -o Section.key=value: the one schema's detection keys (det-train's config.yaml gives the model, its
classes, its resize and its validation list: Global.pretrained_model is --weights, DataLoader.Eval.dataset.list
--list, DataLoader.Eval.dataset.image_root --data, else DataLoader.Train.dataset.image_root); flags win.
Two processes never write one output: the second stops at once naming the first's pid.
Several processes: each runs its contiguous share of whole batches, process 0 scores all of them (the one-process
result) and writes; "world_size" records how many.
"""

from __future__ import annotations

import argparse

HELP = "evaluate an object detector: COCO AP, AP50, AP75, per-class AP"


def add_img_scale_argument(parser: argparse.ArgumentParser) -> None:
    from .common import positive_int

    parser.add_argument(
        "--img-scale", type=positive_int, nargs=2, metavar=("W", "H"),
        help="resize keeping the ratio to fit W x H (default 1333 800)",
    )  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_config_arguments, add_eval_run_arguments, positive_int

    add_config_arguments(parser, "YAML in the one schema's detection sections (det-train's config.yaml: its "
                         "classes, resize and validation list; Arch, Global.pretrained_model, DataLoader)")  # fmt: skip
    parser.add_argument("--model", help="shunted_t_retinanet, shunted_s_retinanet or shunted_b_retinanet")
    parser.add_argument(
        "--weights", help="detection weights (.pdparams or .safetensors), as det-train writes"
    )
    parser.add_argument("--data", help="dataset folder (the list's paths are relative to it)")
    parser.add_argument("--list", dest="list_file", metavar="FILE", help="VOC id list or COCO JSON file")
    parser.add_argument(
        "--label-list", metavar="FILE", help="VOC class names in order (default label_list.txt)"
    )
    add_img_scale_argument(parser)
    parser.add_argument("--output", metavar="F.json", help="write the result as JSON")
    parser.add_argument(
        "--save-detections", metavar="F.json", help="write the detections (COCO results format)"
    )
    parser.add_argument(
        "--detections", metavar="F.json", help="score this COCO results file (no model is run)"
    )
    parser.add_argument("--batch-size", type=positive_int, help="images per batch (default 1)")
    add_eval_run_arguments(parser)


FLAGS = {
    "data": "DataLoader.Eval.dataset.image_root",
    "train_data": "DataLoader.Train.dataset.image_root",  # no flag: a run's config.yaml, when --data is absent
    "list_file": "DataLoader.Eval.dataset.list",
    "batch_size": "DataLoader.Eval.sampler.batch_size",
    "workers": "DataLoader.Eval.loader.num_workers",
}


def run(args: argparse.Namespace) -> int:
    from ..engine.det.evaluate import DetEvalConfig, evaluate_det_checkpoint, format_table
    from ..errors import ShuntedError
    from .common import DET_INFER_KEYS, eval_run, require, seg_settings

    values = seg_settings(args, {**DET_INFER_KEYS, **FLAGS}, required=(), task="detection")
    values["data"] = values["data"] or values["train_data"]
    require(values, FLAGS, ("data", "list_file"))
    if args.detections is None and (values["model"] is None or values["weights"] is None):
        raise ShuntedError(
            "det-eval: give --model and --weights (or --detections FILE to score saved detections)"
        )
    world, fields = eval_run(args, values, "--save-detections")
    cfg = DetEvalConfig(
        **fields,
        label_list=values["label_list"],
        img_scale=values["img_scale"],
        batch_size=values["batch_size"],
        save_detections=args.save_detections,
        detections=args.detections,
    )
    result = evaluate_det_checkpoint(cfg, world=world)
    if result is not None:  # rank 0 prints
        print(format_table(result))
    return 0
