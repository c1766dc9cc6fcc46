"""The ``shunted`` command: one entry point, one subcommand per job.

Each subcommand lives in ``shunted/commands/<name>.py`` and provides ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import Paddle lazily so ``--help`` stays fast.
User-facing errors print one line ``shunted CMD: error: ...`` and exit 2: bad flags (argparse, without the usage
block), ``ShuntedError`` and any ``OSError`` (named by its file). ``--debug`` or ``SHUNTED_DEBUG=1`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from .cpu_memory import keep_freed_memory
from .errors import ShuntedError

COMMANDS = (
    "demo",
    "convert",
    "eval",
    "predict",
    "train",
    "export",
    "bench",
    "info",
    "seg-train",
    "seg-eval",
    "seg-predict",
    "det-train",
    "det-eval",
    "det-predict",
    "serve",
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``shunted CMD: error: ...``, exit 2), like the others."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


class _CommandListFormatter(argparse.HelpFormatter):
    """argparse measures subcommand names without their extra indent (2), so a name of 10+ characters
    (``seg-predict``) would get its help on the next line; this counts the indent."""

    def add_argument(self, action):
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.help is not argparse.SUPPRESS:
            longest = max((len(name) for name in action.choices), default=0)
            self._action_max_length = max(self._action_max_length, longest + self._current_indent + 2)


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = Parser(
        prog="shunted",
        description="Shunted Transformer in PaddlePaddle: convert official weights, evaluate, predict, "
        "fine-tune, export, benchmark.",
        formatter_class=_CommandListFormatter,
    )
    parser.add_argument("--version", action="version", version=f"shunted-paddle {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"shunted.commands.{name.replace('-', '_')}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # reported by the subcommand's parser: "shunted CMD: error: ..."
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    keep_freed_memory()  # Paddle's CPU kernels page-fault on every fresh tensor otherwise (cpu_memory.py)
    debug = getattr(args, "debug", False) or os.environ.get("SHUNTED_DEBUG") == "1"
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"shunted {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ShuntedError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(f"shunted {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or ' '.join(str(exc).split())}"
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
