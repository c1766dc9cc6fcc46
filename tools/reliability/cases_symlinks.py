"""Item 5 of issue 11: symlink loops."""

from __future__ import annotations

import shutil

from .harness import (
    Case,
    check_eval,
    check_predictions,
    check_stderr_has,
    data_setup,
    eval_args,
    predict_args,
    seq,
    train_args,
)


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # ---- 5. symlink loops ----
    add(
        Case(
            "eval: class folder holds loop -> .",
            5,
            eval_args("--output", "res.json"),
            seq(data_setup(2), lambda d, ctx: (d / "data" / "cat" / "loop").symlink_to(".")),
            exit=(0, 2),
            mentions=("loop",),
            check=check_eval(20),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "eval: class folder holds up -> ..",
            5,
            eval_args("--output", "res.json"),
            seq(data_setup(2), lambda d, ctx: (d / "data" / "dog" / "up").symlink_to("..")),
            exit=(0, 2),
            mentions=("up",),
            check=check_eval(20),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "predict: folder holds loop -> .",
            5,
            predict_args("imgs", extra=("--output", "preds.json")),
            seq(
                lambda d, ctx: ctx.copy_images(d / "tmpdata", ("cat",), 2),
                lambda d, ctx: shutil.move(d / "tmpdata" / "cat", d / "imgs"),
                lambda d, ctx: (d / "imgs" / "loop").symlink_to("."),
            ),
            exit=(0, 2),
            mentions=("loop",),
            check=check_predictions(2),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --data is a symlink to itself",
            5,
            eval_args(data="self"),
            lambda d, ctx: (d / "self").symlink_to("self"),
            mentions=("self",),
            needs=("weights",),
            timeout=45,
            quick=True,
        )
    )
    add(
        Case(
            "eval: dangling symlink x.jpg in a class folder",
            5,
            eval_args(),
            seq(data_setup(1), lambda d, ctx: (d / "data" / "cat" / "x.jpg").symlink_to("gone.jpg")),
            mentions=("x.jpg",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "train: class folder holds loop -> .",
            5,
            train_args(),
            seq(data_setup(2, ("cat", "dog")), lambda d, ctx: (d / "data" / "cat" / "loop").symlink_to(".")),
            exit=(0, 2),
            mentions=("loop",),
            check=check_stderr_has(
                r"\b4 (training )?(images|samples)|loop", "train does not say it found 4 images"
            ),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    return cases
