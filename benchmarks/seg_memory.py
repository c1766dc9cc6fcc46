"""Peak memory of ``shunted seg-predict`` against image size: the whole-image pass vs the sliding window.

For each ``shunted_{t,s,b}_fpn`` (random weights, 11 classes: memory does not depend on the values) and each image
size, runs the real command in a child process (``python -m shunted seg-predict IMAGE --mode whole|slide``) on a
generated photo-like PNG and reads the child's peak RSS (``os.wait4``). Prints a Markdown table (the README's)
and, with ``--fit``, fits ``peak = base + a·P + b·P²`` (P = network input pixels) per variant by least squares on
the whole-image rows: the constants of shunted/engine/seg/memory.py, with each row's estimate beside it.

    python benchmarks/seg_memory.py                 # the README table (~10 min on 2 cores)
    python benchmarks/seg_memory.py --fit           # the fit of the constants (bigger images, ~20 min)
    python benchmarks/seg_memory.py --quick         # two small sizes, shunted_t_fpn only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("shunted_t_fpn", "shunted_s_fpn", "shunted_b_fpn")
TABLE_SIZES = ((640, 480), (1280, 960), (1600, 1200), (4000, 3000))
FIT_SIZES = ((320, 240), (480, 360), (640, 480), (800, 600), (960, 720), (1120, 840))
MB = 1 << 20

WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def weights(variant: str, folder: Path) -> Path:
    path = folder / f"{variant}.pdparams"
    if not path.exists():
        code = (
            "import paddle, shunted, sys; paddle.seed(0); "
            f"m = shunted.create_model({variant!r}, num_classes=11); paddle.save(m.state_dict(), sys.argv[1])"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=REPO)
    return path


def image(width: int, height: int, folder: Path) -> Path:
    """A smooth photo-like picture (gradients and blocks), PNG."""
    from PIL import Image

    path = folder / f"img_{width}x{height}.png"
    if not path.exists():
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        rgb = np.stack([x / width * 255, y / height * 255, ((x // 97 + y // 61) % 2) * 200 + 20], axis=-1)
        Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def peak_mb(variant: str, w: Path, img: Path, mode: str, folder: Path, extra: list[str]) -> tuple[float, str]:
    out = folder / f"out-{variant}-{img.stem}-{mode}"
    rss = folder / "rss.txt"
    cmd = [sys.executable, "-m", "shunted", "seg-predict", "--model", variant, "--weights", str(w), str(img),
           "--output-dir", str(out), "--no-progress", "--mode", mode, *extra]  # fmt: skip
    if mode == "slide":
        cmd += ["--crop-size", "512"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", WRAPPER, str(rss), *cmd], capture_output=True, text=True, env=env)
    status = "ok" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1][:80]
    return int(rss.read_text()) / 1024, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true", help="fit the constants of shunted/engine/seg/memory.py")
    parser.add_argument("--quick", action="store_true", help="two small sizes, shunted_t_fpn only")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    from shunted.engine.seg import memory

    sizes = FIT_SIZES if args.fit else TABLE_SIZES
    variants = args.variants
    if args.quick:
        sizes, variants = ((160, 120), (320, 240)), ["shunted_t_fpn"]
    help_text = subprocess.run([sys.executable, "-m", "shunted", "seg-predict", "--help"], capture_output=True,
                               text=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout  # fmt: skip
    unbounded = ["--max-memory", "1000000G"] if "--max-memory" in help_text else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="seg-memory-") as tmp:
        folder = Path(tmp)
        for variant in variants:
            w = weights(variant, folder)
            for width, height in sizes:
                img = image(width, height, folder)
                for mode in ("whole",) if args.fit else ("whole", "slide"):
                    estimate = memory.whole_image_bytes(variant, height, width) / MB
                    if mode == "whole" and not args.fit and estimate > memory.available_bytes() * 0.5 / MB:
                        rows.append(dict(variant=variant, size=f"{width}×{height}", mode=mode, peak_mb=None,
                                         estimate_mb=estimate, status="not run: more than half the free memory"))  # fmt: skip
                        continue
                    peak, status = peak_mb(variant, w, img, mode, folder, unbounded)
                    rows.append(dict(variant=variant, size=f"{width}×{height}", pixels=width * height, mode=mode,
                                     peak_mb=peak, estimate_mb=estimate if mode == "whole" else None,
                                     status=status))  # fmt: skip
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("| model | image | mode | peak RSS | whole-image estimate (memory.py) | |")
    print("|---|---|---|---:|---:|---|")
    for r in rows:
        peak = "—" if r["peak_mb"] is None else f"{r['peak_mb'] / 1024:.2f} GB"
        est = "" if r["estimate_mb"] is None else f"{r['estimate_mb'] / 1024:.2f} GB"
        print(f"| {r['variant']} | {r['size']} | {r['mode']} | {peak} | {est} | {r['status']} |")
    if args.fit:
        for variant in variants:
            mine = [r for r in rows if r["variant"] == variant and r["status"] == "ok"]
            p = np.array([r["pixels"] for r in mine], np.float64)
            y = np.array([r["peak_mb"] * MB for r in mine], np.float64)
            coef, *_ = np.linalg.lstsq(np.stack([np.ones_like(p), p, p * p], 1), y, rcond=None)
            print(f"{variant}: base {coef[0] / MB:.0f} MB, a {coef[1]:.1f} B/px, b {coef[2]:.3e} B/px²")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
