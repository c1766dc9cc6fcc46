"""Argument groups and value checks shared by several subcommands (one definition each).

The ``type=`` functions below refuse out-of-range values while the command line is parsed, before any work: the
parser prints one line (``shunted CMD: error: argument --FLAG: ...``, shunted/cli.py) and exits 2.
"""

from __future__ import annotations

import argparse
import math

STRIDE = 32  # the network's total stride: inputs must be multiples of it (shunted/models/shunted.py)


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
    """A positive multiple of 32: the model's four stages divide the input by 32 (smaller sizes do not run)."""
    value = _int(text)
    if value < STRIDE or value % STRIDE:
        raise argparse.ArgumentTypeError(
            f"{value} must be a positive multiple of {STRIDE} (the network's total stride), e.g. 64 or 224"
        )
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
    """A number in (0, 1] (``--crop-pct``: 0.875, not 87.5)."""
    value = _finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be a fraction in (0, 1], e.g. 0.875")
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
        "--crop-pct", type=fraction, help="resize the shorter side to int(S / crop_pct) (default 0.875)"
    )
    size.add_argument("--resize-short", type=positive_int, help="resize the shorter side to this many pixels")
    parser.add_argument(
        "--interpolation", choices=("bicubic", "bilinear"), help="PIL filter (default bicubic)"
    )
