"""shunted export (work in progress)."""

from __future__ import annotations

import argparse

HELP = "export to Paddle Inference or ONNX, checked against dygraph on real images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("shunted export is not finished yet")
