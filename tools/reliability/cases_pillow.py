"""Item 7 of issue 11: Pillow 13."""

from __future__ import annotations

import json

from .harness import PILLOW_CAP, POSTERIZE, Case, data_setup, eval_args, eval_json, finite_check, train_args


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # ---- 7. Pillow 13 ----
    add(Case("posterize 0 bits: the venv's Pillow", 7, ["-c", POSTERIZE], exit=(0,), quick=True))
    add(
        Case(
            "posterize 0 bits: the --alt-pillow Pillow",
            7,
            ["-c", POSTERIZE],
            exit=(0,),
            needs=("alt_pillow",),
            alt_pillow=True,
        )
    )
    add(Case("pyproject allows Pillow 13", 7, ["-c", PILLOW_CAP], exit=(0,), quick=True))
    add(
        Case(
            "train with RandAugment m10 (--alt-pillow Pillow)",
            7,
            train_args("-o", "DataLoader.Train.transform.auto_augment=rand-m10-n15-mstd0-inc1-p1.0"),
            data_setup(4, ("cat", "dog")),
            exit=(0,),
            check=finite_check("run"),
            needs=("alt_pillow",),
            alt_pillow=True,
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "eval records the --alt-pillow Pillow version",
            7,
            eval_args("--output", "res.json"),
            data_setup(1),
            exit=(0,),
            check=lambda d, c, r: (
                None
                if r.exit != 0
                or f'"{c.alt_pillow_version}"' in json.dumps((eval_json(d) or {}).get("preprocessing", {}))
                else f"Pillow version not recorded as {c.alt_pillow_version}"
            ),
            needs=("weights", "alt_pillow"),
            alt_pillow=True,
            timeout=45,
        )
    )
    return cases
