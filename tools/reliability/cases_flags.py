"""Item 3 of issue 11: non-finite checkpoints; out-of-range flags."""

from __future__ import annotations

from .harness import (
    EVAL_64,
    Case,
    data_setup,
    eval_args,
    export_args,
    finite_check,
    nan_weights,
    predict_args,
    seq,
    train_args,
)


def flag_cases() -> list[Case]:
    """Item 3/6: out-of-range flag values are refused by argparse before any work (no output folder made)."""
    out: list[Case] = []
    train = [
        ("--lr", ["nan", "inf", "-1", "0"]),
        ("--epochs", ["0", "-1"]),
        ("--batch-size", ["0", "-4"]),
        ("--workers", ["-1"]),
        ("--img-size", ["0", "48"]),
        ("--max-steps", ["0", "-1"]),
    ]
    for flag, values in train:
        for v in values:
            out.append(
                Case(
                    f"train {flag} {v}",
                    3,
                    ["train", f"{flag}={v}", *train_args(drop=flag)[1:]],
                    data_setup(1, ("cat", "dog")),
                    mentions=(flag,),
                    absent=("run",),
                    quick=(flag, v) in (("--lr", "nan"), ("--epochs", "0")),
                )
            )
    evals = [
        ("--crop-pct", ["0", "nan", "-0.5"]),
        ("--limit", ["0", "-1"]),
        ("--batch-size", ["0"]),
        ("--workers", ["-1"]),
        ("--img-size", ["0", "-64"]),
        ("--threads", ["0", "-2"]),
    ]
    for flag, values in evals:
        for v in values:
            base = [a for a in EVAL_64]
            if flag in base:
                i = base.index(flag)
                base = base[:i] + base[i + 2 :]
            if flag == "--crop-pct":
                i = base.index("--resize-short")
                base = base[:i] + base[i + 2 :]

            def argv(d, ctx, base=base, flag=flag, v=v):
                return ["eval", f"{flag}={v}", *base, "--weights", str(ctx.good), "--data", "data"] + [
                    "--output",
                    "res.json",
                ]

            out.append(
                Case(
                    f"eval {flag} {v}",
                    3 if flag not in ("--limit", "--crop-pct") else 6,
                    argv,
                    data_setup(1),
                    mentions=(flag,),
                    absent=("res.json",),
                    needs=("weights",),
                    quick=(flag, v) in (("--limit", "0"), ("--crop-pct", "nan")),
                    timeout=45,
                )
            )
    for flag, v in (("--topk", "0"), ("--topk", "-1"), ("--threads", "0"), ("--img-size", "-64")):
        out.append(
            Case(
                f"predict {flag} {v}",
                3,
                predict_args("data", extra=(f"{flag}={v}",)),
                data_setup(1, ("cat",)),
                mentions=(flag,),
                needs=("weights",),
                timeout=45,
            )
        )
    for flag, v in (("--img-size", "0"), ("--img-size", "100"), ("--threads", "0")):
        out.append(
            Case(
                f"export {flag} {v}",
                3,
                export_args("exp", f"{flag}={v}"),
                mentions=(flag,),
                absent=("exp",),
                needs=("weights",),
                timeout=45,
            )
        )
    for args, flag in (
        (["--batch-sizes", "0"], "--batch-sizes"),
        (["--threads", "0"], "--threads"),
        (["--img-size", "0"], "--img-size"),
        (["--repeats", "0"], "--repeats"),
    ):
        out.append(
            Case(
                f"bench {' '.join(args)}",
                6,
                ["bench", "--quick", "--backends", "dygraph", "--img-size", "32", *args],
                mentions=(flag,),
                timeout=45,
                quick=flag == "--batch-sizes",
            )
        )
    for args, flag in (
        (["eval", "--img-size", "32000"], "--img-size"),
        (["eval", "--crop-pct", "1e-6"], "--crop-pct"),
        (["eval", "--resize-short", "1000000000"], "--resize-short"),
    ):
        base = [a for a in EVAL_64 if a not in ("--img-size", "64", "--resize-short", "73")]

        def argv(d, ctx, base=base, args=args):
            return ["eval", *base, "--weights", str(ctx.good), "--data", "data", *args[1:]]

        out.append(
            Case(
                f"eval {' '.join(args[1:])} (absurdly large)",
                3,
                argv,
                data_setup(1),
                mentions=(flag,),
                needs=("weights",),
                timeout=25,
            )
        )
    for command in ("export", "bench"):
        argv = export_args("exp", "--img-size", "32000") if command == "export" else None
        out.append(
            Case(
                f"{command} --img-size 32000 (absurdly large)",
                3,
                argv
                or ["bench", "--quick", "--backends", "dygraph", "--batch-sizes", "1", "--img-size", "32000"],
                mentions=("--img-size",),
                needs=("weights",) if command == "export" else (),
                timeout=25,
            )
        )
    out.append(
        Case("info --img-size 0", 6, ["info", "--img-size", "0"], mentions=("--img-size",), quick=True)
    )
    out.append(Case("info --img-size -32", 6, ["info", "--img-size=-32"], mentions=("--img-size",)))
    out.append(
        Case(
            "demo --batch-size 0",
            6,
            ["demo", "--batch-size", "0", "--output-dir", "out"],
            mentions=("--batch-size",),
            absent=("out",),
            quick=True,
        )
    )
    out.append(
        Case(
            "demo --workers -1",
            6,
            ["demo", "--workers=-1", "--output-dir", "out"],
            mentions=("--workers",),
            absent=("out",),
        )
    )
    return out


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # ---- 3. non-finite checkpoints ----
    cases.extend(flag_cases())
    add(
        Case(
            "train -o learning_rate=nan (config route)",
            3,
            train_args("-o", "Optimizer.lr.learning_rate=nan"),
            data_setup(2, ("cat", "dog")),
            exit=(2,),
            absent=("run/*.pdparams", "run/*.pdckpt"),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "train --lr 1e39 (finite, inf in float32), no warm-up: no non-finite checkpoint",
            3,
            train_args("--lr", "1e39", "-o", "Optimizer.lr.warmup_epoch=0"),
            data_setup(4, ("cat", "dog")),
            exit=(0, 2),
            check=finite_check("run"),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    for key in ("DataLoader.Train.transform.img_size=48", "Optimizer.lr.learning_rate=-1"):
        add(
            Case(
                f"train -o {key} (config route)",
                3,
                train_args("-o", key, drop="--img-size" if "img_size" in key else ""),
                data_setup(2, ("cat", "dog")),
                mentions=(key.split("=")[0].rsplit(".", 1)[-1],),
                absent=("run/*.pd*",),
                timeout=60,
                mem_limit_mb=6144,
            )
        )
    add(
        Case(
            "train --pretrained holding NaN",
            3,
            train_args("--pretrained", "nan.pdparams"),
            seq(nan_weights, data_setup(1, ("cat", "dog"))),
            mentions=("nan.pdparams",),
            absent=("run/*.pdparams", "run/*.pdckpt"),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "eval --weights holding NaN",
            3,
            eval_args("--output", "res.json", weights="nan.pdparams"),
            seq(nan_weights, data_setup(1)),
            mentions=("nan.pdparams",),
            absent=("res.json",),
            needs=("weights",),
            timeout=45,
        )
    )
    return cases
