"""Peak memory of one RetinaNet training step with and without ``--recompute`` (the official issue #3's problem).

    python benchmarks/det_memory.py                                   # 1333x800, batch 2, shunted_t_retinanet
    python benchmarks/det_memory.py --sizes 667x400 1333x800 --batch 2 --model shunted_s_retinanet

Each (size, recompute) runs in a fresh child process: the model is built (random weights, 3 classes), one
training step (forward, ``retina_loss`` with a few boxes per image, backward, AdamW step) is taken, and the
child reports its resident set before the step and its peak (``ru_maxrss``). The step's own cost is peak − before.
CPU, float32, as ``det-train`` runs here; the table is printed with the ratio recompute / plain.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(model_name: str, width: int, height: int, batch: int, recompute: bool) -> dict:
    import numpy as np
    import paddle

    import shunted
    from shunted.engine.det.config import det_train_defaults
    from shunted.engine.det.train import enable_recompute
    from shunted.engine.train.optim import optimizer_from_section
    from shunted.models.retinanet import retina_loss

    paddle.seed(0)
    model = shunted.create_model(model_name, num_classes=3, drop_path_rate=0.1)
    if recompute:
        enable_recompute(model.backbone)
    model.train()
    opt = optimizer_from_section(model, 1e-4, det_train_defaults()["Optimizer"])
    h, w = -(-height // 32) * 32, -(-width // 32) * 32
    x = paddle.to_tensor(np.random.default_rng(0).normal(0, 1, (batch, 3, h, w)).astype(np.float32))
    boxes = [np.array([[10, 20, 200, 180], [w / 2, h / 3, w / 2 + 90, h / 3 + 120]], np.float32)] * batch
    labels = [np.array([0, 2])] * batch
    before = _rss_mb()
    start = time.perf_counter()
    loss = retina_loss(model(x), (h, w), boxes, labels, [(h, w)] * batch)
    (loss["loss_cls"] + loss["loss_box"]).backward()
    opt.step()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"before_mb": round(before, 1), "peak_mb": round(peak, 1), "step_s": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="shunted_t_retinanet")
    parser.add_argument("--sizes", nargs="+", default=["1333x800"], help="WxH of the batch (padded to 32)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        w, h, batch, rc = args.child
        print(json.dumps(child(args.model, int(w), int(h), int(batch), rc == "1")))
        return
    rows = []
    for size in args.sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        for rc in (False, True):
            cmd = [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--child",
                str(w),
                str(h),
                str(args.batch),
                str(int(rc)),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                row = {
                    "error": (done.stderr.strip().splitlines() or ["killed"])[-1],
                    "returncode": done.returncode,
                }
            else:
                row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(
                {"model": args.model, "size": f"{w}x{h}", "batch": args.batch, "recompute": rc, **row}
            )
            print(rows[-1], file=sys.stderr)
    print(
        "| model | input (W×H, padded to 32) | batch | recompute | RSS before step MB | peak MB | step cost MB | vs plain | step s |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    plain = {}
    for r in rows:
        if "error" in r:
            print(
                f"| {r['model']} | {r['size']} | {r['batch']} | {'yes' if r['recompute'] else 'no'} | failed: {r['error']} |||||"
            )
            continue
        cost = r["peak_mb"] - r["before_mb"]
        if not r["recompute"]:
            plain[r["size"]] = cost
        ratio = f"{cost / plain[r['size']]:.2f}×" if r["recompute"] and plain.get(r["size"]) else "1.00×"
        print(
            f"| {r['model']} | {r['size']} | {r['batch']} | {'yes' if r['recompute'] else 'no'} | {r['before_mb']:,.0f} | "
            f"{r['peak_mb']:,.0f} | {cost:,.0f} | {ratio} | {r['step_s']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
