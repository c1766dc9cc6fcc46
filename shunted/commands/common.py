"""Argument groups and value checks shared by several subcommands (one definition each).

The ``type=`` functions below refuse out-of-range values while the command line is parsed, before any work: the
parser prints one line (``shunted CMD: error: argument --FLAG: ...``, shunted/cli.py) and exits 2.
"""

from __future__ import annotations

import argparse
import math

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
    """An integer >= 0 (worker processes: 0 works in-process)."""
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
        "--threads", type=positive_int, default=None, help="CPU threads (default: every core)"
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
        choices=("whole", "slide"),
        default="whole",
        help="whole image at once (default), or a sliding window (--crop-size, --stride)",
    )
    parser.add_argument("--crop-size", type=pair, metavar="S|HxW", help="sliding window size (--mode slide)")
    parser.add_argument(
        "--stride", type=stride_pair, metavar="S|HxW", help="sliding window step (default 2/3 of the crop)"
    )


def seg_inference(args: argparse.Namespace):
    """The ``SegInference`` of --mode / --crop-size / --stride / --batch-size (their rules: one-line errors)."""
    from ..engine.seg.evaluate import SegInference

    return SegInference(args.mode, args.crop_size, args.stride, args.batch_size)
