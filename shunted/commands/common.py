"""Argument groups shared by several subcommands (one definition each)."""

from __future__ import annotations

import argparse


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
    parser.add_argument("--img-size", type=int, help="crop size S (default: the variant's, 224)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--crop-pct", type=float, help="resize the shorter side to int(S / crop_pct) (default 0.875)"
    )
    size.add_argument("--resize-short", type=int, help="resize the shorter side to this many pixels")
    parser.add_argument(
        "--interpolation", choices=("bicubic", "bilinear"), help="PIL filter (default bicubic)"
    )
