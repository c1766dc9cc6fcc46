"""shunted demo (work in progress)."""

from __future__ import annotations

import argparse

HELP = "demo (work in progress)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("shunted demo is not finished yet")
