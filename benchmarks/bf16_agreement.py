"""Does the oneDNN bfloat16 path give the fp32 answers? Top-1 agreement on a real labelled image set.

Runs the same checkpoint through two backends (default: Paddle Inference fp32 and bf16) on every image of a
dataset with the official evaluation pipeline, and prints both accuracies, the top-1 agreement and the largest
logit difference. The issue's bar for counting a bf16 path: agreement ≥ 99.9 %.

    python benchmarks/bf16_agreement.py                       # CIFAR-10 test split (10,000) + the demo checkpoint
    python benchmarks/bf16_agreement.py --limit 1000 --json out.json
    python benchmarks/bf16_agreement.py --recheck-margin 0   # plain bf16, without the fp32 recheck of near-ties
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="shunted_t")
    parser.add_argument("--weights", type=Path, default=SHARED / "demo" / "ckpt_T_cifar10_fp16.pth")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cifar10" / "test")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--backends", nargs=2, default=["inference", "inference_bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--recheck-margin",
        type=float,
        default=None,
        help="inference_bf16: recheck rows whose top-2 gap is below this many logit stds in fp32 "
        "(default: shunted.runtime.recheck.DEFAULT_MARGIN; 0 = plain bf16)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args(argv)

    from shunted.data.transforms import EvalTransform
    from shunted.engine.evaluate import EvalRun, checkpoint_dataset, run_evaluation
    from shunted.engine.session import RuntimeConfig, open_model
    from shunted.fileio import write_json_atomic
    from shunted.runtime.recheck import DEFAULT_MARGIN, uncertain_rows

    margin = DEFAULT_MARGIN if args.recheck_margin is None else args.recheck_margin
    results, logits, rechecked = {}, {}, {}
    for backend in args.backends:
        opened = open_model(
            args.model,
            args.weights,
            RuntimeConfig(backend, args.threads, args.img_size, recheck_margin=margin),
        )
        transform = EvalTransform.from_config(opened.pretrained_cfg, img_size=args.img_size)
        dataset, record = checkpoint_dataset(opened, args.data, transform, limit=args.limit)
        out = Path(f"/tmp/shunted-agreement-{backend}.npy")
        results[backend] = run_evaluation(
            opened.predictor,
            dataset,
            opened.num_classes,
            record,
            EvalRun(batch_size=args.batch_size, save_logits_to=out, progress=False),
        )
        logits[backend] = np.load(out)
        stats = getattr(opened.predictor, "stats", None)
        if stats:
            rechecked[backend] = stats["rechecked"] / max(stats["rows"], 1)
        out.unlink()
    a, b = (logits[k] for k in args.backends)
    agree = float((a.argmax(1) == b.argmax(1)).mean())
    summary = {
        "model": args.model,
        "weights": str(args.weights),
        "data": str(args.data),
        "images": int(len(a)),
        "img_size": args.img_size,
        "backends": args.backends,
        "top1": {k: results[k]["top1"] for k in args.backends},
        "top1_agreement": agree,
        "max_abs_logit_diff": float(np.abs(a - b).max()),
        "bf16_recheck_margin": margin,
        "rechecked_in_fp32": rechecked,
    }
    if margin == 0:
        # Plain bf16 against fp32: what the fp32 recheck would give at a few margins, from the same two logit sets
        # (rows below the margin take their fp32 logits).
        summary["recheck_margins"] = {}
        for candidate in sorted({0.05, 0.1, 0.15, DEFAULT_MARGIN}):
            rows = uncertain_rows(b, candidate)
            mixed = b.copy()
            mixed[rows] = a[rows]
            summary["recheck_margins"][str(candidate)] = {
                "rechecked": rows.size / len(b),
                "top1_agreement": float((a.argmax(1) == mixed.argmax(1)).mean()),
            }
    print(json.dumps(summary, indent=2))
    if args.json:
        write_json_atomic(args.json, summary)
    return 0 if agree >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
