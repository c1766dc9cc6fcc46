"""Issue 20, the training findings (#5, #8, #9, #10, #18; fixed on branch ``train``, listed in
docs/new_cases_train.md): what a run will need is checked before it starts, resumes say what they do. ``ST`` is
seg-train of ``shunted_t_fpn`` on six 64×48 frames with labels 0..3 (train.txt: four, val.txt: two)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .harness import Case, Context, child_env, data_setup, seq, train_args
from .run import fingerprint

ST = ["seg-train", "--model", "shunted_t_fpn", "--data", "D", "--list", "D/train.txt", "--num-classes", "4"]
ST += ["--output", "run", "--epochs", "1", "--max-steps", "1", "--workers", "0", "--batch-size", "2"]
ST += ["--crop-size", "32"]


def frames(bad_train: int | None = None, bad_val: int | None = None):
    """D/img, D/ann: six frames, labels 0..3; ``bad_*``: a label with a 4×4 block of 200 in its corner."""

    def setup(d: Path, ctx: Context) -> None:
        import numpy as np
        from PIL import Image

        root = d / "D"
        (root / "img").mkdir(parents=True)
        (root / "ann").mkdir()
        rng = np.random.default_rng(0)
        lines = []
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
            label = rng.integers(0, 4, (48, 64), dtype=np.uint8)
            if i in (bad_train, bad_val):
                label[-4:, -4:] = 200
            Image.fromarray(label).save(root / "ann" / f"{i}.png")
            lines.append(f"img/{i}.png ann/{i}.png")
        (root / "train.txt").write_text("\n".join(lines[:4]) + "\n")
        (root / "val.txt").write_text("\n".join(lines[4:]) + "\n")

    return setup


def with_crop(crop: str) -> list[str]:
    args = list(ST)
    args[args.index("--crop-size") + 1] = crop
    return args


def first_run(argv: list[str]):
    """Run the command once (this checkout's) before the case: a run that is already complete."""

    def setup(d: Path, ctx: Context) -> None:
        subprocess.run(
            [ctx.python, "-m", "shunted", *argv],
            cwd=d,
            env=child_env(ctx),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=120,
        )
        (d / "before.json").write_text(json.dumps(fingerprint(d / "run")))

    return setup


def run_unchanged(d: Path, ctx: Context, r) -> str | None:
    before = json.loads((d / "before.json").read_text())
    return None if json.loads(json.dumps(fingerprint(d / "run"))) == before else "run/ changed"


def stdout_has(text: str):
    def check(d: Path, ctx: Context, r) -> str | None:
        return None if text in r.stdout else f"stdout does not say {text!r}"

    return check


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    add(
        Case(
            "seg-train: a label value outside the random crop (20#8)",
            12,
            ST,
            frames(bad_train=2),
            mentions=("D/ann/2.png", "label value 200", "nothing was trained"),
            absent=("run",),
            timeout=45,
        )
    )
    add(
        Case(
            "seg-train: a bad validation label, before the first epoch (20#9)",
            12,
            [*ST, "--val-list", "D/val.txt"],
            frames(bad_val=5),
            mentions=("D/ann/5.png", "label value 200", "--val-list"),
            absent=("run",),
            timeout=45,
        )
    )
    for crop in ("1024", "2048"):
        add(
            Case(
                f"seg-train --crop-size {crop} on 64×48 frames (20#5)",
                12,
                with_crop(crop),
                frames(),
                mentions=(f"--crop-size {crop}x{crop}", "use at most 96x128"),
                absent=("run", "config.yaml"),
                timeout=45,
            )
        )
    add(
        Case(
            "seg-train --resume of a complete run says so (20#10)",
            12,
            [*ST, "--resume"],
            seq(frames(), first_run(ST)),
            exit=(0,),
            check=lambda d, ctx, r: (
                stdout_has("all 1 epochs are done already")(d, ctx, r) or run_unchanged(d, ctx, r)
            ),
            timeout=45,
        )
    )
    fewer = list(ST)
    fewer[fewer.index("--epochs") + 1] = "2"
    add(
        Case(
            "seg-train --resume --epochs 1 after 2 epochs (20#10)",
            12,
            [*ST, "--resume"],
            seq(frames(), first_run(fewer)),
            mentions=("run/last.pdckpt", "holds 2 epochs, more than --epochs 1"),
            check=run_unchanged,
            timeout=60,
        )
    )
    add(
        Case(
            "train --resume of a complete run says so (20#10)",
            12,
            train_args("--resume"),
            seq(data_setup(2, ("cat", "dog")), first_run(train_args())),
            exit=(0,),
            check=lambda d, ctx, r: (
                stdout_has("all 1 epochs are done already")(d, ctx, r) or run_unchanged(d, ctx, r)
            ),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    return cases
