"""Predict the top-k classes of images (files, folders, file lists) with class names, streamed.

  shunted predict --model shunted_s --weights ckpt_S.pth cat.jpg photos/ --topk 5
  shunted predict --model shunted_t --weights my10.pdparams --labels names.txt img.jpg --output preds.json
  shunted predict --model shunted_s --weights ckpt_S.pth --list million.txt --output preds.jsonl [--resume]

Class names: --labels imagenet (the bundled ImageNet-1k names, the default for 1,000-class weights) or a FILE
with one name per line in class-index order; by default also the names recorded beside the weights (the
`shunted convert` sidecar of the demo checkpoint, a training run's summary.json). Preprocessing is the
evaluation's (resize, centre crop).

Outputs (shunted/engine/predict.py has the details): ``--output F.jsonl`` streams one JSON line per image
(``path``, top-k ``index``/``name``/``prob``/``logit``, or ``path``/``error`` for an unreadable file), flushed
per batch, with ``F.jsonl.meta.json`` beside it; ``--resume`` continues a killed run. ``--output F.json`` is the
whole-file JSON of earlier releases. Without --output, or with F.json, the predictions are printed; with
F.jsonl only the progress (stderr) and a summary. Under ``paddle.distributed.launch`` every rank writes
``F.rank{r}.jsonl`` and rank 0 writes ``F.index.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

HELP = "top-k predictions with class names for image files, folders or file lists (streamed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_backend_arguments, add_preprocessing_arguments, nonnegative_int, positive_int

    parser.add_argument(
        "inputs", nargs="*", metavar="IMG_OR_DIR", help="image files and/or folders of images (walked sorted)"
    )
    parser.add_argument(
        "--list",
        action="append",
        default=[],
        metavar="FILE",
        dest="lists",
        help="a file of image paths, one per line (relative to its folder, or absolute); may repeat",
    )
    parser.add_argument("--model", required=True, help="variant: shunted_t, shunted_s or shunted_b")
    parser.add_argument("--weights", required=True, help="official .pth, .pdparams or .safetensors")
    parser.add_argument("--topk", type=positive_int, default=5, help="classes per image (default 5)")
    parser.add_argument("--labels", help="'imagenet' or a file of class names, one per line")
    add_preprocessing_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (default 32)")
    parser.add_argument(
        "--workers", type=nonnegative_int, default=2, help="image decoding threads (default 2; 0: none)"
    )
    parser.add_argument(
        "--output",
        metavar="F.jsonl",
        help="F.jsonl: one JSON line per image, written per batch, resumable; F.json: one JSON document",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an --output F.jsonl: skip the images already in it"
    )
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..data.transforms import EvalTransform
    from ..engine import predict as engine
    from ..engine.evaluate import runtime_line
    from ..engine.session import open_model
    from ..engine.world import init_world, threads_per_process
    from ..errors import DataError, ShuntedError
    from ..fileio import check_output_file, check_outputs
    from ..models import get_pretrained_cfg

    if args.topk < 1:
        raise ShuntedError(f"--topk {args.topk}: must be at least 1")
    if not args.inputs and not args.lists:
        raise ShuntedError("give image files or folders, or --list FILE")
    suffix = os.path.splitext(args.output)[1].lower() if args.output else None
    if args.output and suffix not in (".jsonl", ".json"):
        raise ShuntedError(
            f"--output {args.output}: give a .jsonl file (streamed, resumable) or a .json file (one document)"
        )
    if args.resume and suffix != ".jsonl":
        raise ShuntedError("--resume: continues an --output F.jsonl; give one")
    world = init_world()
    if world.size > 1 and suffix != ".jsonl":
        raise ShuntedError(
            f"{world.size} processes: give --output F.jsonl (each process writes its own shard)"
        )
    try:
        cfg = get_pretrained_cfg(args.model)
    except ValueError as exc:
        raise ShuntedError(f"--model: {exc}") from None
    results = engine.shard_path(args.output, world.rank, world.size) if suffix == ".jsonl" else args.output
    outputs = [("--output", args.output)]
    if suffix == ".jsonl":
        outputs = [("--output", results), (None, engine.meta_path(results))]
        if world.size > 1 and world.main:
            outputs.append((None, engine.index_path(args.output)))
    for _, path in outputs:
        if path is not None:
            check_output_file(path)
    engine.check_inputs(args.inputs, args.lists)
    # an output that is an input image (or the weights, the labels, a list) or an image in an input folder
    check_outputs(
        outputs,
        [
            ("--weights", args.weights),
            ("--labels", args.labels),
            *(("--list", p) for p in args.lists),
            *((None, p) for p in args.inputs),
        ],
        data=[(None, p) for p in args.inputs if os.path.isdir(p)],
    )
    # an output that needs --resume fails before the model is built (several processes: below, together)
    if suffix == ".jsonl" and world.size == 1:
        engine.check_fresh(results, args.resume)
    transform = EvalTransform.from_config(
        cfg,
        img_size=args.img_size,
        crop_pct=args.crop_pct,
        resize_short=args.resize_short,
        interpolation=args.interpolation,
    )
    threads = args.threads if args.threads is not None else threads_per_process(world)
    opened = open_model(args.model, args.weights, args.backend, threads, img_size=transform.img_size)
    names, labels = engine.class_names_for(
        args.labels, args.weights, opened.num_classes, opened.weights_sha256
    )

    writer = None
    if suffix == ".jsonl":
        meta = {
            "format": engine.FORMAT,
            "model": args.model,
            "weights": str(args.weights),
            "weights_sha256": opened.weights_sha256,
            "num_classes": opened.num_classes,
            "labels": labels,
            "class_names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest() if names else None,
            "preprocessing": transform.describe(),
            "topk": args.topk,
            "batch_size": args.batch_size,
            "world_size": world.size,
            "rank": world.rank,
            "backend": opened.backend,
            "inputs": [str(p) for p in args.inputs],
            "lists": [str(p) for p in args.lists],
        }
        failure = None
        try:
            writer = engine.JsonlWriter(results, meta, args.resume)
        except ShuntedError as exc:
            failure = exc
        # every process checks its own shard; all stop if one cannot go on (none waits for the others later)
        if world.sum([float(failure is not None)])[0] and failure is None:
            raise ShuntedError("another process cannot continue its shard (its log names the problem)")
        if failure is not None:
            raise failure
    elif suffix == ".json":
        header = {
            "model": args.model,
            "weights": {"path": str(args.weights), "sha256": opened.weights_sha256},
            "num_classes": opened.num_classes,
            "labels": labels,
            "preprocessing": transform.describe(),
        }
        writer = engine.JsonWriter(args.output, header)

    if world.main:
        print(runtime_line(args.backend, threads, world.size), flush=True)
    items = engine.shard(engine.iter_inputs(args.inputs, args.lists), world.rank, world.size, args.batch_size)
    human = suffix != ".jsonl"
    summary = engine.stream_predictions(
        items,
        transform,
        opened.predictor,
        topk=args.topk,
        class_names=names,
        batch_size=args.batch_size,
        workers=args.workers,
        writer=writer,
        show=(lambda recs: print(engine.format_predictions(recs), flush=True)) if human else None,
        progress=world.main,
        errors_to=None if human else sys.stdout,  # printed with the predictions in the human format
        total=engine.count_inputs(args.inputs, args.lists) if world.size == 1 else None,
    )
    totals = summary.totals
    if world.size > 1:
        per_rank = world.gather_ints([totals["images"], totals["unreadable"]])
        if world.main:
            engine.write_index(args.output, writer.meta, per_rank)
        totals = {
            "images": sum(c[0] for c in per_rank),
            "unreadable": sum(c[1] for c in per_rank),
        }
        totals["predicted"] = totals["images"] - totals["unreadable"]
    if world.main:
        where = (
            f" -> {engine.index_path(args.output) if world.size > 1 else args.output}" if args.output else ""
        )
        resumed = f", {summary.resumed:,} already in the output" if summary.resumed else ""
        line = (
            f"predicted {totals['predicted']:,} images, {totals['unreadable']:,} unreadable{resumed}; "
            f"this run {summary.images:,} in {summary.seconds:.1f} s ({summary.img_s:.1f} img/s"
            f"{' on rank 0' if world.size > 1 else ''}){where}"
        )
        if totals["predicted"] or not totals["unreadable"]:
            print(line, flush=True)
    if totals["predicted"] == 0 and totals["unreadable"]:
        first = f"; {summary.first_error}" if summary.first_error else ""
        raise DataError(f"no image could be read ({totals['unreadable']:,} unreadable{first})")
    return 0
