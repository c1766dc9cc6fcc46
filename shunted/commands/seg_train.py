"""Train a semantic segmentation model: a Shunted backbone with a Semantic FPN head (shunted_{t,s,b}_fpn).

The paper's Semantic FPN setting by default (AdamW, lr 1e-4, weight decay 1e-4, poly schedule with power 1.0,
per iteration); every knob is a key of shunted/config_schema.py (the segmentation keys); -c FILE and -o Section.key=value override
the defaults (an unknown key is an error) and the flags below override the config.

Data: PaddleSeg file lists ('image label' lines relative to --data; labels are single-channel class-index PNGs),
or without --list the folder pair --data/images + --data/labels. Labels equal to --ignore-index count nowhere.

Fine-tune from a classification checkpoint (the backbone is loaded strictly, the head starts fresh), CamVid:
    shunted seg-train --model shunted_t_fpn --data camvid --list camvid/train.txt --val-list camvid/val.txt \\
        --num-classes 11 --ignore-index 11 --output runs/camvid --pretrained ckpt_T.pth --epochs 80
or with every CamVid setting from the shipped config:
    shunted seg-train -c configs/shunted_t_fpn_camvid.yaml --data camvid --output runs/camvid --pretrained W

Resume a run that stopped: the same command with --resume. Many processes: as `shunted train`,
    python -m paddle.distributed.launch --nproc_per_node 2 tools/launch.py seg-train ...
Outputs in --output: last.pdckpt (full state), last.pdparams / best.pdparams (weights; best = highest val mIoU,
what `shunted seg-eval --weights` takes), metrics.csv/.json, metrics.png (if matplotlib is installed),
config.yaml, summary.json.
"""

from __future__ import annotations

import argparse

HELP = "train a segmentation model (Semantic FPN, resumable, multi-process via paddle.distributed.launch)"


def crop_size(text: str) -> int:
    from shunted.commands.common import positive_int

    value = positive_int(text)
    if value > 2048:
        raise argparse.ArgumentTypeError(f"{value} is too large: at most 2048")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from shunted.commands.common import (
        REDUCE_ZERO_LABEL_HELP,
        add_training_run_arguments,
        ignore_index,
        num_classes,
        positive_float,
        positive_int,
    )

    parser.add_argument("--model", default=None, help="shunted_t_fpn / shunted_s_fpn / shunted_b_fpn")
    parser.add_argument("--data", default=None, help="dataset root folder (the list's paths start there)")
    parser.add_argument("--list", default=None, help="training list: 'image label' lines (PaddleSeg)")
    parser.add_argument("--val-list", default=None, help="validation list (mIoU per epoch, best.pdparams)")
    parser.add_argument("--num-classes", type=num_classes, default=None, help="classes K (labels 0..K-1)")
    parser.add_argument(
        "--ignore-index", type=ignore_index, default=None, help="label value to ignore (default 255)"
    )
    parser.add_argument("--reduce-zero-label", action="store_true", default=None, help=REDUCE_ZERO_LABEL_HELP)
    parser.add_argument("--output", default=None, help="run folder for checkpoints and metrics")
    parser.add_argument(
        "--pretrained",
        default=None,
        help="backbone weights: a classification checkpoint (.pth, .pdparams, .safetensors)",
    )
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None, help="images per process and step")
    parser.add_argument(
        "--crop-size", type=crop_size, default=None, help="square training crop (default 512)"
    )
    parser.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 1e-4)")
    add_training_run_arguments(parser, "YAML config (configs/shunted_t_fpn_camvid.yaml lists every key)")


def resolve_config(args: argparse.Namespace) -> dict:
    """The resolved, checked seg-train config of the command line (shunted/engine/seg/config.py)."""
    from ..engine.seg.config import FLAGS, seg_train_config
    from .common import flag_values

    return seg_train_config(
        getattr(args, "config", None), getattr(args, "override", None), flag_values(args, FLAGS)
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import get
    from ..engine.seg.train import seg_train
    from ..engine.train.state import OUTPUTS
    from ..fileio import check_output_dir, check_outputs, lock_output

    cfg = resolve_config(args)  # flags and config checked before any work
    out = get(cfg, "Global.output_dir")
    check_output_dir(out)
    root = get(cfg, "DataLoader.Train.dataset.image_root")
    check_outputs(
        [(None, Path(out) / name) for name in OUTPUTS],
        [
            ("--pretrained", get(cfg, "Global.pretrained_model")),
            ("--list", get(cfg, "DataLoader.Train.dataset.list")),
            ("--val-list", get(cfg, "DataLoader.Eval.dataset.list")),
        ],
        [("--data", root)],
    )
    lock_output(out, "--output")  # one writer per run folder (cli.py releases it)
    seg_train(cfg)
    return 0
