"""Print the variant table: trainable parameters and multiply-accumulates (G) next to the paper's figures.

The README's variant table is this command's ``--markdown`` output.
"""

from __future__ import annotations

import argparse

HELP = "variant table: parameters, FLOPs (MACs) and the paper's figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..models.registry import list_models
    from .common import image_size

    parser.add_argument(
        "--models", nargs="+", default=None, choices=list_models(), help="variants (default: all)"
    )
    parser.add_argument(
        "--img-size", type=image_size, default=224, help="input size for the FLOP count (default 224)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")


def format_table(rows: list[dict], img_size: int, markdown: bool) -> str:
    header = [
        "model",
        "params",
        "params (paper)",
        f"GMACs @{img_size} (layers + attention)",
        "FLOPs (paper)",
        "top-1 official (paper)",
    ]
    body = [
        [
            r["model"],
            f"{r['params']:,}",
            f"{r['paper_params_m']} M",
            f"{r['gmacs_total']:.2f} ({r['gmacs_layers']:.2f} + {r['gmacs_total'] - r['gmacs_layers']:.2f})",
            f"{r['paper_gflops']} G",
            f"{r['paper_top1']} %",
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*row) for row in body])


def run(args: argparse.Namespace) -> int:
    from ..engine.summary import variant_summary
    from ..models import list_models

    models = args.models or list_models()
    rows = [variant_summary(name, args.img_size) for name in models]
    print(format_table(rows, args.img_size, args.markdown))
    return 0
