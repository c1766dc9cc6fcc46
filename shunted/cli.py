"""The ``shunted`` command: one entry point, one subcommand per job.

Each subcommand lives in ``shunted/commands/<name>.py`` and provides ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import Paddle lazily so ``--help`` stays fast.
User-facing errors print one line ``shunted CMD: error: ...`` and exit 2: bad flags (argparse, without the usage
block), ``ShuntedError`` and any ``OSError`` (named by its file). ``--debug`` or ``SHUNTED_DEBUG=1`` shows the
traceback. SIGTERM ends a command like Ctrl-C, with one line and exit code 143 (Paddle's own handler, which dumps a
C++ stack and aborts, is replaced once Paddle is imported). Under ``paddle.distributed.launch`` each process dies
with the launcher (``PR_SET_PDEATHSIG``): killing the launcher leaves no process writing its outputs. The output
locks a command took (``fileio.lock_output``) are released when it ends.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.util
import os
import signal
import sys
import traceback

from .cpu_memory import keep_freed_memory
from .errors import ShuntedError
from .fileio import release_outputs

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
    die_with_launcher()
    keep_freed_memory()  # Paddle's CPU kernels page-fault on every fresh tensor otherwise (cpu_memory.py)
    debug = getattr(args, "debug", False) or os.environ.get("SHUNTED_DEBUG") == "1"
    previous = _handle_sigterm()
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"shunted {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"shunted {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except (ShuntedError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(f"shunted {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        release_outputs()
        _restore_sigterm(previous)


class Terminated(BaseException):
    """SIGTERM arrived (raised in the main thread by the handler, like KeyboardInterrupt for SIGINT)."""


def _raise_terminated(signum, frame):
    raise Terminated()


class _AfterPaddle(importlib.abc.MetaPathFinder):
    """Installs our SIGTERM handler again right after ``import paddle`` (which installs its own, in C++)."""

    def find_spec(self, name, path=None, target=None):
        if name != "paddle":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module, run=run):
                run(module)
                signal.signal(signal.SIGTERM, _raise_terminated)

            spec.loader.exec_module = exec_module
        return spec


def _handle_sigterm():
    """Install the SIGTERM handler (now, and again after Paddle's import); the previous handler, to restore."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        return None
    if "paddle" not in sys.modules and not any(isinstance(f, _AfterPaddle) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterPaddle())
    return previous


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterPaddle)]


def die_with_launcher() -> None:
    """Under ``paddle.distributed.launch`` (which starts each process in its own session, out of reach of a kill
    of the launcher's process group): ask the kernel to SIGKILL this process when the launcher dies."""
    if "PADDLE_TRAINER_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    launcher = os.getppid()
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != launcher:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or ' '.join(str(exc).split())}"
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
