"""Argument groups and value checks shared by several subcommands (one definition each).

The ``type=`` functions below refuse out-of-range values while the command line is parsed, before any work: the
parser prints one line (``shunted CMD: error: argument --FLAG: ...``, shunted/cli.py) and exits 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

STRIDE = 32  # the network's total stride: inputs must be multiples of it (shunted/models/shunted.py)
# Upper bounds so an absurd value is refused while parsing instead of exhausting memory later. Stage 1's attention
# grows with (S/4)^2 x (S/32)^2 ~ S^4: shunted_b at S=1024, batch 1, needs about 3 GB on CPU, at 2048 about 16x that.
MAX_IMAGE_SIZE = 1024
MIN_CROP_PCT = 0.25  # timm / PaddleClas use 0.5 .. 1.0; resize_short = int(S / crop_pct) stays <= 4 x S
MAX_RESIZE_SHORT = 4 * MAX_IMAGE_SIZE


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, epochs, steps, counts, threads)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (workers or threads: 0 works in the loop itself)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def image_size(text: str) -> int:
    """A positive multiple of 32 up to MAX_IMAGE_SIZE: the model's four stages divide the input by 32 (smaller
    sizes do not run); larger ones exhaust memory (stage 1's attention grows with the fourth power of the size)."""
    value = _int(text)
    if value < STRIDE or value % STRIDE:
        raise argparse.ArgumentTypeError(
            f"{value} must be a positive multiple of {STRIDE} (the network's total stride), e.g. 64 or 224"
        )
    if value > MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"{value} is too large: at most {MAX_IMAGE_SIZE}")
    return value


def num_classes(text: str) -> int:
    """A class count >= 2 (a classifier over a single class has nothing to learn)."""
    value = _int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value}: a classifier needs at least 2 classes")
    return value


def resize_short(text: str) -> int:
    """A shorter-side length in pixels, 1 .. MAX_RESIZE_SHORT."""
    value = _int(text)
    if not 1 <= value <= MAX_RESIZE_SHORT:
        raise argparse.ArgumentTypeError(f"{value} must be between 1 and {MAX_RESIZE_SHORT} pixels")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (pauses, margins)."""
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = _finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be a fraction in (0, 1], e.g. 0.875")
    return value


def crop_pct(text: str) -> float:
    """``--crop-pct`` in [MIN_CROP_PCT, 1] (0.875, not 87.5): the resize side int(S / crop_pct) stays bounded."""
    value = _finite_float(text)
    if not MIN_CROP_PCT <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be a fraction in [{MIN_CROP_PCT}, 1], e.g. 0.875")
    return value


def flag_values(args: argparse.Namespace, flags: dict[str, str]) -> dict:
    """Config key → the value of its flag (``flags``: argparse attribute → config key; None when not given)."""
    return {key: getattr(args, attr, None) for attr, key in flags.items()}


def add_training_run_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """The flags every training command (train, seg-train, det-train) shares: loader workers, resume, seed, the
    smoke tests' step cap, and ``-c`` / ``-o``."""
    parser.add_argument("--workers", type=nonnegative_int, default=None, help="data loader worker processes")
    parser.add_argument("--resume", action="store_true", help="continue from --output/last.pdckpt")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--max-steps", type=positive_int, default=None, help="stop each epoch after N steps (smoke tests)"
    )
    add_config_arguments(parser, config_help)


def add_config_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """``-c config.yaml`` and repeatable ``-o Section.key=value`` overrides (PaddleClas's convention)."""
    parser.add_argument("-c", "--config", default=None, help=config_help)
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. -o Global.seed=1 (repeatable)",
    )


def add_preprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    """Evaluation preprocessing: crop size, resize rule and filter (defaults from the variant's config)."""
    parser.add_argument(
        "--img-size", type=image_size, help="crop size S, a multiple of 32 (default: the variant's, 224)"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--crop-pct", type=crop_pct, help="resize the shorter side to int(S / crop_pct) (default 0.875)"
    )
    size.add_argument(
        "--resize-short",
        type=resize_short,
        help=f"resize the shorter side to this many pixels (<= {MAX_RESIZE_SHORT})",
    )
    parser.add_argument(
        "--interpolation", choices=("bicubic", "bilinear"), help="PIL filter (default bicubic)"
    )


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--threads`` and ``--no-cache`` for the commands that run a model (eval, predict, seg-*)."""
    from ..runtime import BACKENDS

    parser.add_argument(
        "--backend",
        choices=("auto", *BACKENDS),
        default="auto",
        help="runtime (default auto: the fastest float32 runtime installed whose parity with dygraph the tests "
        "check: openvino, else onnxruntime, else inference, else dygraph); the static ones run an export of the "
        "model, made once and kept in the start-up cache",
    )
    parser.add_argument(
        "--threads",
        type=threads,
        default=None,
        help="CPU threads (default: every core; at most twice the cores)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="export to a temporary folder instead of reading or writing the start-up cache "
        "($XDG_CACHE_HOME/shunted, default ~/.cache/shunted)",
    )


def runtime_banner(args: argparse.Namespace, threads: int | None, processes: int = 1) -> str:
    """The ``runtime:`` line of a command with ``add_backend_arguments``: the runtime ``--backend`` resolves to."""
    from ..engine.evaluate import runtime_line
    from ..engine.session import AUTO, resolve_backend

    line = runtime_line(resolve_backend(args.backend), threads, processes)
    return line + (" (chosen by --backend auto)" if args.backend == AUTO else "")


def add_eval_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--workers, --limit, --no-progress and the backend flags (seg-eval and det-eval)."""
    parser.add_argument(
        "--workers", type=nonnegative_int, help="image decoding threads (default 2; 0: in the loop)"
    )
    parser.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_arguments(parser)


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads(text: str) -> int:
    """``--threads``: 1 to twice the cores (more only slows the run: 1000 threads ran 9x slower); past the core
    count a one-line warning."""
    value = positive_int(text)
    n = cores()
    if value > 2 * n:
        raise argparse.ArgumentTypeError(
            f"{value} is more than twice the {n} cores of this machine (at most {2 * n}; more only slows the run)"
        )
    if value > n:
        print(
            f"shunted: warning: --threads {value} is more than the {n} cores of this machine; runs may be slower",
            file=sys.stderr,
        )
    return value


def ignore_index(text: str) -> int:
    """``--ignore-index``: a label value in 0..255 (segmentation labels are 8-bit PNGs)."""
    value = _int(text)
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 255 (labels are 8-bit PNGs)")
    return value


REDUCE_ZERO_LABEL_HELP = "labels 0 = 'other' -> 255, k -> k-1 (ADE20K, as mmseg); use with --ignore-index 255"


# segmentation inference (seg-eval, seg-predict)
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
        choices=("auto", "whole", "slide"),
        default=None,
        help="auto (default): the whole image at once when its estimated memory fits --max-memory, else a sliding "
        "window; whole; or slide (--crop-size, --stride)",
    )
    parser.add_argument(
        "--max-memory",
        type=memory_size,
        metavar="SIZE",
        help="memory budget of one image's pass, e.g. 4G or 512M (default: half the memory available now)",
    )
    parser.add_argument(
        "--crop-size",
        type=pair,
        metavar="S|HxW",
        help="sliding window size (--mode slide, or auto when it slides)",
    )
    parser.add_argument(
        "--stride", type=stride_pair, metavar="S|HxW", help="sliding window step (default 2/3 of the crop)"
    )


def seg_settings(
    args: argparse.Namespace, flags: dict[str, str], required: tuple[str, ...], task: str = "segmentation"
) -> dict:
    """Each ``flags`` attribute's value: the flag when given, else the ``-c`` file / ``-o`` override of its
    config key (``flags``: attribute → key of shunted/config_schema.py as ``task`` sees it: segmentation, or
    detection for det-eval / det-predict), else the schema's default; the config checked against the schema.
    ``required``: attributes that must end up set."""
    from ..config import get, layered_config
    from ..config_schema import DET, det_train_defaults, seg_train_defaults

    given = {}
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        given[key] = list(value) if isinstance(value, tuple) else value  # (h, w) flags: [h, w] keys
    defaults = det_train_defaults if task == DET else seg_train_defaults
    cfg = layered_config(
        task, defaults, getattr(args, "config", None), getattr(args, "override", None), given,
        {key: flag_name(attr) for attr, key in flags.items()},
    )  # fmt: skip
    values = {attr: get(cfg, key) for attr, key in flags.items()}
    for attr in ("crop_size", "stride", "img_scale"):
        if isinstance(values.get(attr), list):
            values[attr] = tuple(values[attr])
    require(values, flags, required)
    return values


def require(values: dict, flags: dict[str, str], required: tuple[str, ...]) -> None:
    """A ConfigError naming the first of ``required`` that ``values`` lacks, its flag and its config key."""
    from ..config import ConfigError

    for attr in required:
        if values.get(attr) is None:
            raise ConfigError(f"{flag_name(attr)} is required (or set {flags[attr]} in the -c config)")


def flag_name(attr: str) -> str:
    """The command-line flag of argparse attribute ``attr`` (``list_file`` is ``--list``)."""
    return "--list" if attr == "list_file" else "--" + attr.replace("_", "-")


# seg-eval / seg-predict flag → key of the one config schema (PaddleClas's sections)
SEG_INFER_KEYS = {
    "model": "Arch.name",
    "weights": "Global.pretrained_model",
    "num_classes": "Arch.class_num",
    "batch_size": "DataLoader.Eval.sampler.batch_size",
    "scale": "DataLoader.Eval.transform.scale",
    "mode": "Infer.mode",
    "crop_size": "Infer.crop_size",
    "stride": "Infer.stride",
}


def seg_inference(values: dict, max_memory: int | None = None):
    """The ``SegInference`` of mode / crop_size / stride / batch_size (``seg_settings``) and --max-memory (their
    rules: one-line errors)."""
    from ..engine.seg.evaluate import SegInference

    return SegInference(
        values["mode"], values["crop_size"], values["stride"], values["batch_size"], model=values["model"],
        max_memory=max_memory,
    )  # fmt: skip


def eval_run(args: argparse.Namespace, values: dict, saves: str) -> tuple:
    """seg-eval / det-eval after their settings: the processes (``init_world``), ``--output`` and the ``saves``
    flag's path (``--save-masks``, ``--save-detections``) locked, one writer each (cli.py releases them), and the
    config fields the two share (model, data, loader, runtime, output). Returns (world, fields)."""
    from ..engine.world import init_world, threads_per_process
    from ..fileio import lock_output

    world = init_world()
    lock_output(args.output, "--output")
    lock_output(getattr(args, saves[2:].replace("-", "_")), saves)
    return world, {
        "model": values["model"],
        "weights": values["weights"],
        "data": values["data"],
        "list_file": values["list_file"],
        "limit": args.limit,
        "workers": 2 if values["workers"] is None else values["workers"],
        "backend": args.backend,
        "threads": args.threads if args.threads is not None else threads_per_process(world),
        "output": args.output,
        "progress": not args.no_progress,
    }


UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_size(text: str) -> int:
    """A size in bytes from ``4G``, ``512M``, ``1.5GB``, ``2GiB`` (a unit is required)."""
    import re

    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT])(?:i?B)?\s*", text, re.I)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size with a unit, e.g. 4G or 512M")
    value = float(found.group(1)) * UNITS[found.group(2).upper()]
    if value < 64 * UNITS["M"]:
        raise argparse.ArgumentTypeError(f"{text}: at least 64M (Paddle and the model alone need more)")
    return int(value)


# det-eval / det-predict flag → key of the one config schema (the detection keys det-train writes to config.yaml:
# a run's config gives the classes and the resize its validation used)
DET_INFER_KEYS = {
    "model": "Arch.name",
    "weights": "Global.pretrained_model",
    "label_list": "DataLoader.Train.dataset.label_list",
    "img_scale": "DataLoader.Train.transform.img_scale",
}
