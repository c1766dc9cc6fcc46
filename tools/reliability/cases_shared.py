"""Cases that need ../shared (real ImageNet samples, CamVid)."""

from __future__ import annotations

from .harness import Case, check_eval, eval_args, synset_weights


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # ---- needs ../shared: real ImageNet samples through eval with a label file ----
    add(
        Case(
            "eval ImageNet samples + val_list.txt, 1000-class weights (shared)",
            4,
            lambda d, ctx: eval_args(
                "--labels",
                str(ctx.shared / "data/imagenet-samples/val_list.txt"),
                "--output",
                "res.json",
                "--limit",
                "8",
                weights="in1k.pdparams",
                data=str(ctx.shared / "data/imagenet-samples"),
            )(d, ctx),
            synset_weights,
            exit=(0,),
            check=check_eval(8),
            needs=("weights", "shared"),
            timeout=60,
        )
    )
    add(
        Case(
            "eval --data camvid/ (a segmentation set, 4 folders) (shared)",
            4,
            lambda d, ctx: eval_args("--limit", "8", data=str(ctx.shared / "data/camvid"))(d, ctx),
            exit=(2,),
            mentions=("camvid",),
            needs=("weights", "shared"),
            timeout=45,
        )
    )
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, dup
    return cases
