"""Issue 20, the inference findings (#1, #13, #14, #15, #17; fixed on branch ``infer``): one walker that never
opens a FIFO named like an image, output folders that keep the user's edits and survive a Ctrl-C, lists with a
byte-order mark, processes that compare their listings. The timing of #13 (a folder growing between the ranks'
walks) and #15 (Ctrl-C after the first image) is made exact in a ``python -c`` wrapper around the command, as
tests/engine/test_infer_inputs.py does."""

from __future__ import annotations

import os
from pathlib import Path

from .harness import Case, Context, check_stderr_has, predict_args, run_shunted, seq

FIFO = "is a named pipe (FIFO), not a regular file"


def jpg(*names: str):
    def setup(d: Path, ctx: Context) -> None:
        for name in names:
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(ctx.images["cat"][0].read_bytes())

    return setup


def fifo(name: str):
    def setup(d: Path, ctx: Context) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(d / name)

    return setup


def text(name: str, content: str, encoding: str = "utf-8"):
    def setup(d: Path, ctx: Context) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(content, encoding=encoding)

    return setup


def label(name: str):
    def setup(d: Path, ctx: Context) -> None:
        import numpy as np
        from PIL import Image

        (d / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.arange(32 * 32).reshape(32, 32) % 11).astype(np.uint8), "L").save(d / name)

    return setup


def seg(*args: str):
    """``seg-eval`` / ``seg-predict`` of the prepared shunted_t_fpn (11 classes) with ``args``."""

    def argv(d: Path, ctx: Context) -> list[str]:
        return [args[0], "--model", "shunted_t_fpn", "--weights", str(ctx.seg), "--no-progress", *args[1:]]

    return argv


SEG_DATA = seq(jpg("seg/images/a.jpg"), label("seg/labels/a.png"), label("seg/labels/b.png"))


def edited_mask(d: Path, ctx: Context) -> None:
    run_shunted(d, ctx, seg("seg-predict", "x.jpg", "--output-dir", "outq")(d, ctx))
    with open(d / "outq" / "x.png", "ab") as fh:
        fh.write(b"the user's edit")


# seg-predict a.jpg b.jpg into o, then a re-run on c, b, a interrupted (KeyboardInterrupt, what Ctrl-C raises)
# once c's three files are written; prints whether o is the first run's, byte for byte.
CTRL_C_RERUN = """
import os, sys
from PIL import Image
from shunted import cli

base = ["seg-predict", "--model", "shunted_t_fpn", "--weights", sys.argv[1], "--no-progress", "--output-dir", "o"]
assert cli.main([*base, "a.jpg", "b.jpg"]) == 0
files = lambda: {n: open(os.path.join("o", n), "rb").read() for n in sorted(os.listdir("o"))}
before, save, calls = files(), Image.Image.save, []

def save_then_interrupt(self, *args, **kw):
    calls.append(1)
    if len(calls) > 3:
        raise KeyboardInterrupt
    return save(self, *args, **kw)

Image.Image.save = save_then_interrupt
code = cli.main([*base, "c.jpg", "b.jpg", "a.jpg"])
Image.Image.save = save
after = files()
print("o is the first run's, byte for byte" if after == before else f"o changed: {sorted(after)} vs {sorted(before)}")
sys.exit(code)
"""

# 2-process predict of a folder that gains an image (sorting in the middle) between the ranks' walks: rank 1 runs
# first in this process, its collectives leaving their values for rank 0's (tests/engine/test_infer_inputs.py).
GROWING_FOLDER = """
import shutil, sys
from shunted.cli import main
from shunted.engine import predict

class SequentialWorld:
    def __init__(self, rank, mailbox):
        self.rank, self.size, self.local_size, self.mailbox, self.calls = rank, 2, 2, mailbox, 0
    main = property(lambda self: self.rank == 0)
    def _exchange(self, value):
        self.calls += 1
        if self.rank == 1:
            self.mailbox[self.calls] = value
            return [value, value]
        return [value, self.mailbox[self.calls]]
    def sum(self, values):
        return [a + b for a, b in zip(*self._exchange(values))]
    def gather_ints(self, values):
        return self._exchange(values)

mailbox, run = {}, predict.run_predict
predict.run_predict = lambda cfg, world, **kw: run(cfg, SequentialWorld(1, mailbox), **kw)
argv = ["predict", "--model", "shunted_t", "--weights", sys.argv[1], "--img-size", "32", "--resize-short", "32",
        "--workers", "0", "--output", "p.jsonl", "in"]
main(argv)
shutil.copy("in/0.jpg", "in/1.jpg")  # sorts between 0.jpg and 2.jpg
predict.run_predict = lambda cfg, world, **kw: run(cfg, SequentialWorld(0, mailbox), **kw)
sys.exit(main(argv))
"""


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    add(
        Case(
            "predict a folder holding a FIFO b.jpg, --workers 2 (20#1)",
            13,
            predict_args("in", extra=("--output", "p.jsonl", "--workers", "2")),
            seq(jpg("in/a.jpg"), fifo("in/b.jpg")),
            exit=(0,),
            check=check_stderr_has(
                r"in/b\.jpg: cannot read image \(is a named pipe", "the FIFO is not reported"
            ),
            needs=("weights",),
            timeout=40,
        )
    )
    add(
        Case(
            "predict --list naming a FIFO b.jpg (20#1)",
            13,
            predict_args(extra=("--list", "l.txt", "--output", "q.jsonl")),
            seq(jpg("in/a.jpg"), fifo("in/b.jpg"), text("l.txt", "in/a.jpg\nin/b.jpg\n")),
            exit=(0,),
            check=check_stderr_has(
                r"in/b\.jpg: cannot read image \(is a named pipe", "the FIFO is not reported"
            ),
            needs=("weights",),
            timeout=40,
        )
    )
    for skip in (False, True):

        def argv(d: Path, ctx: Context, skip=skip) -> list[str]:
            extra = ["--skip-bad", "--output", "res.json"] if skip else []
            return ["eval", "--model", "shunted_t", "--weights", str(ctx.good), "--img-size", "64"] + [
                "--resize-short",
                "73",
                "--data",
                "d",
                "--workers",
                "2",
                "--no-progress",
                *extra,
            ]

        add(
            Case(
                "eval: a FIFO b.jpg in a class folder, --workers 2"
                + (" --skip-bad" if skip else "")
                + " (20#1)",
                13,
                argv,
                seq(jpg("d/cat/a.jpg", "d/dog/a.jpg"), fifo("d/cat/b.jpg")),
                exit=(0,) if skip else (2,),
                mentions=() if skip else ("d/cat/b.jpg", FIFO),
                check=check_stderr_has(
                    r"cat/b\.jpg: cannot read image \(is a named pipe", "the FIFO is not named"
                ),
                needs=("weights",),
                timeout=40,
            )
        )
    add(
        Case(
            "seg-eval: a FIFO b.jpg among the images, --workers 2 (20#1)",
            13,
            seg("seg-eval", "--data", "seg", "--workers", "2"),
            seq(SEG_DATA, fifo("seg/images/b.jpg")),
            mentions=("seg/images/b.jpg", FIFO),
            needs=("seg",),
            timeout=40,
        )
    )
    add(
        Case(
            "seg-predict: a FIFO b.jpg in the input folder (20#1)",
            13,
            seg("seg-predict", "seg/images", "--output-dir", "outp"),
            seq(SEG_DATA, fifo("seg/images/b.jpg")),
            mentions=("seg/images/b.jpg", FIFO),
            absent=("outp",),
            needs=("seg",),
            timeout=40,
        )
    )
    add(
        Case(
            "seg-eval: a FIFO as a label (20#1)",
            13,
            seg("seg-eval", "--data", "seg", "--workers", "0"),
            seq(jpg("seg/images/a.jpg"), fifo("seg/labels/a.png")),
            mentions=("seg/labels/a.png", "cannot read label", FIFO),
            needs=("seg",),
            timeout=40,
        )
    )
    add(
        Case(
            "seg-eval: a corrupt image, --workers 2: one line, no SystemError (20#1)",
            13,
            seg("seg-eval", "--data", "seg", "--workers", "2"),
            seq(SEG_DATA, text("seg/images/b.jpg", "junk")),
            mentions=("seg/images/b.jpg", "cannot identify image file"),
            needs=("seg",),
            timeout=40,
        )
    )
    add(
        Case(
            "seg-predict into its earlier folder holding a mask the user edited (20#14)",
            13,
            seg("seg-predict", "x.jpg", "--output-dir", "outq"),
            seq(jpg("x.jpg"), edited_mask),
            mentions=("outq", "x.png changed since shunted seg-predict wrote it"),
            keep=("outq/x.png",),
            needs=("seg",),
            timeout=45,
        )
    )
    add(
        Case(
            "predict --list saved with a UTF-8 BOM (20#17)",
            13,
            predict_args(extra=("--list", "l.txt", "--output", "b.jsonl")),
            seq(jpg("in/a.jpg"), text("l.txt", "\ufeffin/a.jpg\n")),
            exit=(0,),
            check=check_stderr_has("predicted 1 images, 0 unreadable", "the first image is not predicted"),
            needs=("weights",),
        )
    )
    add(
        Case(
            "seg-predict re-run interrupted after its first image: the folder is the first run's (20#15)",
            13,
            lambda d, ctx: ["-c", CTRL_C_RERUN, str(ctx.seg)],
            jpg("a.jpg", "b.jpg", "c.jpg"),
            exit=(130,),
            check=lambda d, ctx, r: (
                stdout_says("o is the first run's, byte for byte")(d, ctx, r)
                or check_stderr_has("shunted seg-predict: interrupted", "no 'interrupted' line")(d, ctx, r)
            ),
            absent=("o/.shunted-partial",),
            needs=("seg",),
            timeout=60,
        )
    )
    add(
        Case(
            "2-process predict of a folder that grows between the ranks' walks (20#13)",
            13,
            lambda d, ctx: ["-c", GROWING_FOLDER, str(ctx.good)],
            jpg("in/0.jpg", "in/2.jpg", "in/4.jpg"),
            mentions=("the inputs differ between processes", "process 1 lists 3 images, process 0 4"),
            absent=("p.index.json",),
            error_command="predict",
            needs=("weights",),
            timeout=60,
        )
    )
    return cases


def stdout_says(text: str):
    def check(d: Path, ctx: Context, r) -> str | None:
        return None if text in r.stdout else f"stdout does not say {text!r}: {r.stdout.strip()[-200:]!r}"

    return check
