"""Evaluate top-1/top-5 with the official preprocessing (PIL decode and bicubic resize, torchvision's rounding).

  shunted eval --model shunted_s --weights ckpt_S.pth --data ILSVRC2012/val            class folders (synset ids)
  shunted eval --model shunted_s --weights ckpt_S.pth --data val --labels val_list.txt  flat folder + label file
  shunted eval -c configs/shunted_s.yaml -o Global.pretrained_model=ckpt_S.pth -o DataLoader.Eval.dataset.image_root=val

Defaults come from the variant's config (224 px, crop_pct 0.875 → resize 256, bicubic, ImageNet mean/std);
flags given on the command line win over the config file. Prints a table; --output writes it as JSON and
--save-logits the logits (.npy, rows in sample order), both atomically. An unreadable image stops the run with
its name, unless --skip-bad, which skips it and lists it in the JSON.

Several processes, one machine or many (`paddle.distributed.launch` takes a script path: tools/launch.py in a
checkout, the package's __main__.py in a pip install, see tools/launch.py):
  python -m paddle.distributed.launch --nproc_per_node 2 tools/launch.py eval --model shunted_s ...
Each process evaluates its share of the images; process 0 gathers and writes one result, identical (counts,
top-1/top-5, skipped files, --save-logits rows in sample order) to a one-process run. Without --threads each
process uses its share of the machine's cores. Every node must see --data at the same path.

Class folders map to the model's classes by name when the names are known (--class-names FILE; the sidecar
`shunted convert` writes; a training run's summary.json; ImageNet synset folders for 1000 classes): a folder
that is not a class is an error. Unknown names: sorted folder order, only with as many folders as classes.
"""

from __future__ import annotations

import argparse

HELP = "evaluate top-1/top-5 on ImageNet-style data with the official preprocessing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import (
        add_backend_arguments,
        add_config_arguments,
        add_preprocessing_arguments,
        nonnegative_int,
        positive_int,
    )

    add_config_arguments(parser, "PaddleClas-style YAML (Arch, Global.pretrained_model, DataLoader.Eval)")
    parser.add_argument("--model", help="variant: shunted_t, shunted_s or shunted_b")
    parser.add_argument("--weights", help="official .pth, .pdparams or .safetensors")
    parser.add_argument("--data", help="folder of class folders, or of images listed by --labels")
    parser.add_argument(
        "--labels", help="label file of 'relative/path label' lines (PaddleClas val_list.txt)"
    )
    parser.add_argument(
        "--class-names",
        metavar="FILE",
        help="the model's class names, one per line in class-index order: class folders map to classes by "
        "name (default: names recorded beside the weights, ImageNet synsets for 1000 classes)",
    )
    parser.add_argument("--num-classes", type=positive_int, help="class count (default: the checkpoint's)")
    add_preprocessing_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, help="images per batch (default 64)")
    parser.add_argument(
        "--workers", type=nonnegative_int, help="image decoding threads (default 2; 0: in the loop)"
    )
    parser.add_argument("--limit", type=positive_int, help="evaluate only the first N samples")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed in the JSON)")
    parser.add_argument(
        "--save-logits", metavar="F.npy", help="write the logits, one row per sample in order"
    )
    parser.add_argument("--output", metavar="F.json", help="write the result as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_arguments(parser)


_DEFAULTS = {"batch_size": 64, "workers": 2}
_KEYS = (
    "model",
    "weights",
    "data",
    "labels",
    "class_names",
    "num_classes",
    "img_size",
    "crop_pct",
    "resize_short",
    "interpolation",
    "batch_size",
    "workers",
)


def settings(args: argparse.Namespace) -> dict:
    """Command-line flags over the config file over the defaults; the config's mean/std must be the registry's."""
    from ..config import ConfigError, eval_settings, load_config
    from ..models import get_pretrained_cfg

    from_config = (
        eval_settings(load_config(args.config, args.override)) if (args.config or args.override) else {}
    )
    merged = {key: getattr(args, key) for key in _KEYS}
    for key, value in from_config.items():
        if key in merged and merged[key] is None:
            merged[key] = value
    if args.crop_pct is not None:
        merged["resize_short"] = None  # an explicit --crop-pct wins over the config's resize_short
    for key, value in _DEFAULTS.items():
        if merged[key] is None:
            merged[key] = value
    for key in ("model", "weights", "data"):
        if merged[key] is None:
            raise ConfigError(f"--{key} is required (or set it in the -c config)")
    try:
        cfg = get_pretrained_cfg(merged["model"])
    except ValueError as exc:
        raise ConfigError(f"--model: {exc}") from None
    if merged["interpolation"] not in (None, "bicubic", "bilinear"):
        raise ConfigError(f"ResizeImage.interpolation {merged['interpolation']!r}: use bicubic or bilinear")
    for key in ("mean", "std"):
        if key in from_config and tuple(from_config[key]) != tuple(getattr(cfg, key)):
            raise ConfigError(
                f"NormalizeImage.{key} {list(from_config[key])} differs from {merged['model']}'s {list(getattr(cfg, key))}"
            )
    return merged


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluate import EvalConfig, evaluate_checkpoint, format_table
    from ..engine.world import init_world, threads_per_process
    from ..fileio import lock_output
    from .common import runtime_banner

    merged = settings(args)
    world = init_world()
    lock_output(args.output, "--output")  # one writer per output (cli.py releases it)
    lock_output(args.save_logits, "--save-logits")
    threads = args.threads if args.threads is not None else threads_per_process(world)
    if world.main:
        print(runtime_banner(args, threads, world.size), flush=True)
    cfg = EvalConfig(
        **merged,
        limit=args.limit,
        skip_bad=args.skip_bad,
        save_logits_to=args.save_logits,
        output=args.output,
        progress=not args.no_progress,
        backend=args.backend,
        cache=not args.no_cache,
        threads=threads,
    )
    result = evaluate_checkpoint(cfg, world=world)
    if result is None:  # a process other than 0: process 0 prints and writes
        return 0
    print(format_table(result))
    for item in result["skipped"]:
        print(f"skipped {item['path']}: {item['error']}")
    return 0
