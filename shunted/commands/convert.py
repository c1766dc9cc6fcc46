"""Convert checkpoints between the official PyTorch layout and Paddle — without PyTorch.

  shunted convert ckpt_T.pth shunted_t.pdparams        official .pth (zip or legacy) → Paddle
  shunted convert ckpt_T.pth shunted_t.safetensors     → safetensors (Paddle layout)
  shunted convert shunted_t.pdparams ckpt_T.pth        Paddle → official layout {'model': state_dict}

The .pth is read by an allow-list unpickler: a file naming any other global (os.system, eval, …) is refused and
nothing in it runs; memory stays bounded by the file's size (sizes the file declares are checked against what it
holds before anything is allocated). The variant and class count are detected from the keys and shapes and every
key, shape and dtype is checked strictly before tensor data is read. SRC must be a regular file (not a device or
pipe) and is never modified. DST and its DST.json sidecar are written to temporaries and renamed into place, the
sidecar first, so DST is never replaced without its sidecar (which records DST's size and sha256).
"""

from __future__ import annotations

import argparse

HELP = "convert official .pth checkpoints to .pdparams/.safetensors (and back) without torch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint to read: .pth/.pt/.bin (PyTorch), .pdparams or .safetensors")
    parser.add_argument("dst", help="file to write: .pdparams, .safetensors or .pth (official torch layout)")
    parser.add_argument(
        "--model", help="expected variant (shunted_t/s/b); an error if the file holds another"
    )
    parser.add_argument("--num-classes", type=int, help="expected class count; an error if the head differs")
    parser.add_argument(
        "--key",
        metavar="KEY",
        help="entry of the checkpoint dict holding the weights, e.g. model, state_dict, model_ema "
        "(default: the first of those present, or the file itself if it is a bare state dict)",
    )
    parser.add_argument(
        "--keep-dtype",
        action="store_true",
        help="keep float16/float64 tensors as they are (default: float32); bfloat16 is always widened to "
        "float32 (exact; numpy has no bfloat16)",
    )


def run(args: argparse.Namespace) -> int:
    from ..convert import convert_file

    info = convert_file(
        args.src,
        args.dst,
        model=args.model,
        num_classes=args.num_classes,
        key=args.key,
        keep_dtype=args.keep_dtype,
    )
    print(
        f"{info['source']['name']} → {args.dst}: {info['variant']}, {info['num_classes']} classes, "
        f"{info['num_tensors']} tensors, {info['dtype']}"
    )
    return 0
