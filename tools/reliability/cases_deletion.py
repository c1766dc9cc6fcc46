"""Item 1 of issue 11: no command deletes files it did not write."""

from __future__ import annotations

import os
import shutil

from .harness import (
    EVAL_64,
    Case,
    check_stdout_lacks,
    data_setup,
    eval_args,
    export_args,
    finite_check,
    orphan_run,
    predict_args,
    seq,
    touch,
    train_args,
    user_project,
)


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # ---- 1. no command deletes files it did not write ----
    add(
        Case(
            "export --output into a folder of user files",
            1,
            export_args("myproject"),
            lambda d, ctx: user_project(d),
            exit=(0, 2),
            mentions=("myproject",),
            keep=("myproject/thesis.tex", "myproject/src/main.py"),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "export --output . (the current folder)",
            1,
            export_args("."),
            lambda d, ctx: touch(d / "notes.txt"),
            exit=(0, 2),
            keep=("notes.txt",),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "export --output is a user's symlink to a folder",
            1,
            export_args("link"),
            seq(lambda d, ctx: user_project(d, "real"), lambda d, ctx: (d / "link").symlink_to("real")),
            exit=(0, 2),
            keep=("real/thesis.tex", "real/src/main.py"),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "export --output is an existing file",
            1,
            export_args("out.txt"),
            lambda d, ctx: touch(d / "out.txt"),
            mentions=("out.txt",),
            keep=("out.txt",),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "convert: sidecar DST.json is the source file",
            1,
            ["convert", "w.safetensors.json", "w.safetensors"],
            lambda d, ctx: shutil.copyfile(ctx.demo_pth, d / "w.safetensors.json"),
            exit=(0, 2),
            keep=("w.safetensors.json",),
            timeout=45,
        )
    )
    add(
        Case(
            "convert: DST is a folder of user files",
            1,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "mine.pdparams"],
            lambda d, ctx: touch(d / "mine.pdparams" / "thesis.tex"),
            mentions=("mine.pdparams",),
            keep=("mine.pdparams",),
            timeout=45,
        )
    )
    add(
        Case(
            "convert: DST is a symlink to SRC",
            1,
            ["convert", "a.pdparams", "b.pdparams"],
            lambda d, ctx: (
                shutil.copyfile(ctx.good, d / "a.pdparams"),
                (d / "b.pdparams").symlink_to("a.pdparams"),
            ),
            mentions=("b.pdparams",),
            keep=("a.pdparams",),
            needs=("weights",),
            quick=True,
        )
    )
    add(
        Case(
            "convert: DST is a hard link of SRC",
            1,
            ["convert", "a.pdparams", "b.pdparams"],
            lambda d, ctx: (
                shutil.copyfile(ctx.good, d / "a.pdparams"),
                os.link(d / "a.pdparams", d / "b.pdparams"),
            ),
            exit=(0, 2),
            keep=("a.pdparams",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "train --output: user files kept, orphan .tmp of a killed run removed",
            1,
            train_args(),
            orphan_run,
            exit=(0,),
            keep=("run/thesis.tex", "run/.my-notes.tmp"),
            absent=("run/.last.pdckpt.*.tmp", "run/.*.tmp.*"),
            check=finite_check("run"),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "eval --output is a folder of user files",
            1,
            eval_args("--output", "results"),
            seq(data_setup(1), lambda d, ctx: touch(d / "results" / "keep.txt")),
            mentions=("results",),
            keep=("results",),
            check=check_stdout_lacks("top-1", "refused only after the evaluation"),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --output is the --weights file",
            1,
            lambda d, ctx: [
                "eval",
                *EVAL_64,
                "--weights",
                "w.pdparams",
                "--data",
                "data",
                "--output",
                "w.pdparams",
            ],
            seq(data_setup(1), lambda d, ctx: shutil.copyfile(ctx.good, d / "w.pdparams")),
            mentions=("w.pdparams",),
            keep=("w.pdparams",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --output is one of the evaluated images",
            1,
            eval_args("--output", "data/cat/0000.jpg"),
            data_setup(1),
            mentions=("0000.jpg",),
            keep=("data",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --output and --save-logits are the same file",
            1,
            eval_args("--output", "r.json", "--save-logits", "r.json"),
            data_setup(1),
            mentions=("r.json",),
            check=check_stdout_lacks("top-1", "refused only after the evaluation"),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "predict --output is the input image",
            1,
            predict_args("img.jpg", extra=("--output", "img.jpg")),
            lambda d, ctx: shutil.copyfile(ctx.images["cat"][0], d / "img.jpg"),
            mentions=("img.jpg",),
            keep=("img.jpg",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "bench --json is a folder of user files",
            1,
            [
                "bench",
                "--quick",
                "--backends",
                "dygraph",
                "--img-size",
                "32",
                "--batch-sizes",
                "1",
                "--json",
                "results",
            ],
            lambda d, ctx: touch(d / "results" / "keep.txt"),
            mentions=("results",),
            keep=("results",),
            check=check_stdout_lacks("img/s", "refused only after the benchmark"),
            timeout=60,
        )
    )
    return cases
