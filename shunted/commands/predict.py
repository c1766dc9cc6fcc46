"""shunted predict (work in progress)."""

from __future__ import annotations

import argparse

HELP = "predict (work in progress)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("shunted predict is not finished yet")
