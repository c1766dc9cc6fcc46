"""Train an object detector: RetinaNet on a Shunted backbone (shunted_{t,s,b}_retinanet), the paper's 1x setting.

  shunted det-train --model shunted_t_retinanet --data bccd --list train.txt --val-list val.txt --output runs/bccd \
      --backbone-pretrained ckpt_T.pth [--epochs 12] [--batch-size 2] [--img-scale 1333 800] [--freeze N] [--recompute]

Defaults (mmdet retinanet_r50_fpn_1x as PVT v2 trains it): AdamW lr 1e-4, weight decay 1e-4, gradient clipping 35,
linear warm-up over 500 iterations, x0.1 after epochs 8 and 11 of 12 (scaled to --epochs), batch 2, resize to fit
1333 x 800 and flip 0.5. Every knob is a key of the one schema (shunted/config_schema.py, the detection keys):
-c FILE and -o Section.key=value override the defaults (an unknown key is an error) and the flags override both.

Data: Pascal VOC (Annotations/*.xml, JPEGImages/, an id list, label_list.txt for the class order) or a COCO JSON
file; boxes of zero area or outside their image are dropped and counted (said once, and in summary.json).
--backbone-pretrained: an official classification checkpoint loaded strictly into the backbone. --freeze N: backbone
stages 1..N frozen. --recompute: the backbone blocks' activations recomputed in the backward pass (less memory).
Resume: the same command with --resume. Many processes: python -m paddle.distributed.launch --nproc_per_node 2
tools/launch.py det-train ... Outputs in --output: last.pdckpt, last.pdparams / best.pdparams (best = highest val
COCO AP, what det-eval --weights takes), metrics.csv/.json/.png, config.yaml, summary.json.
"""

from __future__ import annotations

import argparse

HELP = "train an object detector (RetinaNet, resumable, multi-process via paddle.distributed.launch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_training_run_arguments, nonnegative_int, positive_float, positive_int

    parser.add_argument(
        "--model", default=None, help="shunted_t_retinanet / shunted_s_retinanet / shunted_b_retinanet"
    )
    parser.add_argument("--data", default=None, help="dataset folder (the list's paths are relative to it)")
    parser.add_argument(
        "--list", dest="list_file", default=None, help="training list: VOC ids or a COCO JSON file"
    )
    parser.add_argument("--val-list", default=None, help="validation list (COCO AP per epoch, best.pdparams)")
    parser.add_argument(
        "--label-list", default=None, help="VOC class names in order (default label_list.txt)"
    )
    parser.add_argument("--output", default=None, help="run folder for checkpoints and metrics")
    parser.add_argument(
        "--backbone-pretrained", default=None, help="a classification checkpoint for the backbone"
    )
    parser.add_argument("--epochs", type=positive_int, default=None, help="default 12 (the 1x schedule)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="images per process and step (2)"
    )
    parser.add_argument(
        "--img-scale", type=positive_int, nargs=2, default=None, metavar=("W", "H"),
        help="resize keeping the ratio to fit W x H (default 1333 800)",
    )  # fmt: skip
    parser.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 1e-4)")
    parser.add_argument(
        "--freeze", type=nonnegative_int, default=None, help="freeze backbone stages 1..N (0-4)"
    )
    parser.add_argument(
        "--recompute", action="store_true", default=None, help="gradient checkpointing of the backbone"
    )
    add_training_run_arguments(parser, "YAML config (the detection keys of shunted/config_schema.py)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import get
    from ..engine.det.config import FLAGS, det_train_config
    from ..engine.det.train import det_train
    from ..engine.train.state import OUTPUTS
    from ..fileio import check_output_dir, check_outputs, lock_output
    from .common import flag_values

    cfg = det_train_config(
        getattr(args, "config", None), getattr(args, "override", None), flag_values(args, FLAGS)
    )
    out = get(cfg, "Global.output_dir")
    check_output_dir(out)
    check_outputs(
        [(None, Path(out) / name) for name in OUTPUTS],
        [
            ("--backbone-pretrained", get(cfg, "Global.pretrained_model")),
            ("--list", get(cfg, "DataLoader.Train.dataset.list")),
            ("--val-list", get(cfg, "DataLoader.Eval.dataset.list")),
        ],
        [("--data", get(cfg, "DataLoader.Train.dataset.image_root"))],
    )
    lock_output(out, "--output")  # one writer per run folder (cli.py releases it)
    det_train(cfg)
    return 0
