"""Train or fine-tune a Shunted Transformer with the official (DeiT-style) recipe.

Every knob is a key of shunted/config_schema.py, whose defaults are the official recipe (written out as
configs/shunted_{t,s,b}_train.yaml); -c FILE and -o Section.key=value override them (an unknown key is an error),
and the flags below override the config.

Fine-tune the bundled CIFAR-10 checkpoint on your own classes (head re-initialised when --num-classes differs):
    shunted train --model shunted_t --data train/ --val-data val/ --output runs/ft \\
        --pretrained ckpt.pth --num-classes 5 --epochs 10 --batch-size 64 --img-size 64

Resume a run that stopped (crash, SIGKILL, Ctrl-C): the same command with --resume.

Many processes (CPU: gloo; GPUs: NCCL) through Paddle's launcher, which takes a script path (not -m): in a
checkout tools/launch.py, in a pip install the package's __main__.py (see tools/launch.py):
    python -m paddle.distributed.launch --nproc_per_node 2 tools/launch.py train --model shunted_t ...
Multi-node: add --ips host1,host2 on every node; --output must be on a file system all nodes share (for --resume).
Outputs in --output: last.pdckpt (full state), last.pdparams / best.pdparams (weights), metrics.csv/.json,
metrics.png (if matplotlib is installed), config.yaml.
"""

from __future__ import annotations

import argparse

HELP = "train or fine-tune (official recipe, resumable, multi-process via paddle.distributed.launch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from shunted.commands.common import (  # absolute: this file also runs as a script
        add_training_run_arguments,
        image_size,
        num_classes,
        positive_float,
        positive_int,
    )

    parser.add_argument("--model", default=None, help="shunted_t / shunted_s / shunted_b (default: from -c)")
    parser.add_argument(
        "--data", required=True, help="training images: class folders, or a folder + --labels"
    )
    parser.add_argument(
        "--labels", default=None, help="label list file ('relative/path label' lines) for --data"
    )
    parser.add_argument("--val-data", default=None, help="validation images (top-1 per epoch, best.pdparams)")
    parser.add_argument("--val-labels", default=None, help="label list file for --val-data")
    parser.add_argument("--output", required=True, help="run folder for checkpoints and metrics")
    parser.add_argument(
        "--pretrained", default=None, help="initial weights: official .pth, .pdparams, .safetensors"
    )
    parser.add_argument(
        "--num-classes", type=num_classes, default=None, help="classes (default: from the data)"
    )
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None, help="images per process and step")
    parser.add_argument(
        "--lr", type=positive_float, default=None, help="peak learning rate (default: 5e-4 x batch/512)"
    )
    parser.add_argument("--img-size", type=image_size, default=None, help="training crop size (default 224)")
    parser.add_argument("--freeze", type=int, default=None, help="freeze the first N stages (0-4)")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None, help="mixed precision (GPU)")
    add_training_run_arguments(
        parser, "YAML config over the recipe (configs/<model>_train.yaml lists every key)"
    )


def resolve_config(args: argparse.Namespace) -> dict:
    """The resolved, checked training config of the command line (shunted/engine/train/config.py)."""
    from ..engine.train.config import FLAGS, train_config
    from .common import flag_values

    return train_config(args.config, args.override, flag_values(args, FLAGS))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..engine.train import train
    from ..engine.train.classification import ClassificationTask
    from ..engine.train.state import OUTPUTS
    from ..fileio import check_output_dir, check_outputs, lock_output

    check_output_dir(args.output)  # before the data is listed and the model built
    # the run's files must not replace an input (--pretrained runs/x/last.pdparams) nor go into the data
    # (metrics.png would be listed as an image)
    check_outputs(
        [(None, Path(args.output) / name) for name in OUTPUTS],
        [("--pretrained", args.pretrained), ("--labels", args.labels), ("--val-labels", args.val_labels)],
        [("--data", args.data), ("--val-data", args.val_data)],
    )
    lock_output(args.output, "--output")  # one writer per run folder (cli.py releases it)
    train(resolve_config(args), ClassificationTask)
    return 0
