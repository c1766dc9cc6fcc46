"""shunted bench (work in progress)."""

from __future__ import annotations

import argparse

HELP = "CPU throughput of the backends next to the PyTorch reference"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("shunted bench is not finished yet")
