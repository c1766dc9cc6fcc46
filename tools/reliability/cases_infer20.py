"""Issue 20, the inference findings (#1, #14, #17; fixed on branch ``infer``, listed in docs/new_cases_infer.md):
one walker that never opens a FIFO named like an image, output folders that keep the user's edits, lists with a
byte-order mark. (#13, a folder growing during a 2-process run, and #15, Ctrl-C during a re-run, need timing the
table cannot give: tests/engine/test_infer_inputs.py covers them.)"""

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
    return cases
