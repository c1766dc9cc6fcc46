"""Item 4 of issue 11: class folders map by name."""

from __future__ import annotations

import shutil

from .harness import (
    DEMO_PTH,
    Case,
    check_eval,
    data_setup,
    eval_args,
    names_file,
    predict_args,
    seq,
    synset_weights,
    train_args,
)


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # ---- 4. class folders map by name ----
    add(
        Case(
            "eval cat/ + dog/ only, weights without class names",
            4,
            lambda d, ctx: eval_args("--output", "res.json", weights=str(ctx.demo_pth))(d, ctx),
            data_setup(10, ("cat", "dog")),
            exit=(0, 2),
            mentions=("--class-names",),
            check=check_eval(20, top1_min=70),
            timeout=60,
        )
    )
    add(
        Case(
            "eval cat/ + dog/ only, the bundled demo weights (names known)",
            4,
            eval_args("--output", "res.json", weights=str(DEMO_PTH)),
            data_setup(10, ("cat", "dog")),
            exit=(0,),
            check=check_eval(20, top1_min=70),
            timeout=60,
        )
    )
    add(
        Case(
            "eval cat/ + dog/ only, --class-names",
            4,
            eval_args("--class-names", "names.txt", "--output", "res.json"),
            seq(data_setup(10, ("cat", "dog")), names_file),
            exit=(0,),
            check=check_eval(20, top1_min=70),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "eval a folder that is not a class (unicorn/)",
            4,
            eval_args("--class-names", "names.txt", "--output", "res.json"),
            seq(
                data_setup(2, ("cat",)),
                data_setup(2, ("dog",)),
                lambda d, ctx: shutil.move(d / "data" / "dog", d / "data" / "unicorn"),
                names_file,
            ),
            mentions=("unicorn",),
            absent=("res.json",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --class-names with 3 names for 10 classes",
            4,
            eval_args("--class-names", "names.txt"),
            seq(data_setup(1, ("cat",)), lambda d, ctx: names_file(d, ctx, ("cat", "dog", "bird"))),
            mentions=("names.txt",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval all 10 folders (control, positional = by name)",
            4,
            eval_args("--output", "res.json"),
            data_setup(5),
            exit=(0,),
            check=check_eval(50, top1_min=70),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "eval ImageNet synset folders map by synset",
            4,
            eval_args("--output", "res.json", weights="in1k.pdparams"),
            synset_weights,
            exit=(0, 2),
            check=check_eval(2, top1_eq=50.0),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "train on a single class",
            4,
            train_args(),
            data_setup(4, ("cat",)),
            mentions=("data",),
            absent=("run/*.pd*",),
            timeout=45,
        )
    )
    add(
        Case(
            "train --val-data folders differ from --data's",
            4,
            train_args("--val-data", "val"),
            seq(data_setup(2, ("cat", "dog")), data_setup(1, ("cat", "bird"), name="val")),
            mentions=("val",),
            absent=("run/*.pd*",),
            timeout=45,
        )
    )
    add(
        Case(
            "predict --labels with 3 names for 10 classes",
            4,
            predict_args("data", extra=("--labels", "names.txt")),
            seq(data_setup(1, ("cat",)), lambda d, ctx: names_file(d, ctx, ("cat", "dog", "bird"))),
            mentions=("names.txt",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --labels with a label out of range",
            4,
            eval_args("--labels", "list.txt", data="flat"),
            seq(
                lambda d, ctx: (d / "flat").mkdir(),
                lambda d, ctx: shutil.copyfile(ctx.images["cat"][0], d / "flat" / "a.jpg"),
                lambda d, ctx: (d / "list.txt").write_text("a.jpg 12\n"),
            ),
            mentions=("list.txt",),
            needs=("weights",),
            timeout=45,
        )
    )
    return cases
