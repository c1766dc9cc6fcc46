"""Batched top-1/top-5 evaluation with the official preprocessing.

``evaluate(dataset, predict_batch, ...)`` is backend-agnostic: ``predict_batch`` maps a float32 NCHW batch to
logits (any runtime of ``shunted/runtime/``). ``run_evaluation(predict_batch, dataset, num_classes, record)``
adds the outputs (JSON, logits) to one pass; ``evaluate_checkpoint`` is ``shunted eval`` as a function: it opens
the checkpoint once (``shunted/engine/session.py``), lists the data and calls ``run_evaluation``. The pass itself is
the one inference loop of every task (``shunted/engine/infer.py``) with ``TopkAccumulator``. Images are decoded in
``workers`` threads while the runtime computes; the result records how long the loop waited for data and how
long the model took, so it shows which of the two set the pace.

Bad images never vanish silently: without ``skip_bad`` the first one stops the run with a DataError naming the
file; with it, every skipped file is listed in the result and its logits row is NaN (rows stay in sample order).

Several processes (``paddle.distributed.launch ... tools/launch.py eval ...``, ``world`` from
``shunted/engine/world.py``): every rank checks the outputs, opens the model and lists the data itself, then
evaluates its contiguous shard of the samples (``World.shard``: every sample in exactly one shard, whole
batches of a one-process run, counts of batches within one of each other). Rank 0 gathers the shards' outcomes
and merges them in rank order (``merge_outcomes``), which is sample order: counts, skipped files and logits rows
are those of a one-process run; rank 0 alone writes.
A rank that fails (a bad image without ``skip_bad``) exits with its one-line error; the launcher then stops the
others and exits non-zero, printing that line.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.datasets import BAD_LABEL, ImageDataset, marked_sample
from ..data.loader_guard import LoaderOnlyFailure, failure_of
from ..errors import DataError
from ..fileio import atomic_path, check_output_file, check_outputs, write_json_atomic
from ..runtime import DEFAULT_MARGIN
from .infer import Source, numpy, run_inference
from .session import RuntimeConfig, open_model
from .world import World, first_different

PredictBatch = Callable[[np.ndarray], np.ndarray]


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per row: is the label among the ``k`` largest logits (rank = number of strictly larger logits)."""
    label_logit = np.take_along_axis(logits, labels[:, None], axis=1)
    rank = (logits > label_logit).sum(axis=1)
    return rank < k


@dataclass
class EvalOutcome:
    """What one pass over a dataset (or a shard of it) produced (counts over the images that were evaluated).

    first, samples: the shard, ``range(first, first + samples)`` of the dataset's samples (evaluated or skipped);
    ``logits`` row i is sample ``first + i``. per_rank: each process's share of the work, with its timing.
    """

    first: int = 0
    samples: int = 0
    n: int = 0
    correct1: int = 0
    correct5: int = 0
    k5: int = 5
    skipped: list[dict] = field(default_factory=list)
    logits: np.ndarray | None = None
    wall_s: float = 0.0
    model_s: float = 0.0
    data_wait_s: float = 0.0
    per_rank: list[dict] = field(default_factory=list)

    @property
    def top1(self) -> float:
        return 100.0 * self.correct1 / self.n if self.n else float("nan")

    @property
    def top5(self) -> float:
        return 100.0 * self.correct5 / self.n if self.n else float("nan")


def _collate(batch):
    images = np.stack([b[0] for b in batch])
    labels = np.asarray([b[1] for b in batch], np.int64)
    index = np.asarray([b[2] for b in batch], np.int64)
    return images, labels, index


class TopkAccumulator:
    """Classification's accumulator for the inference loop (``shunted/engine/infer.py``): top-1 / top-k counts,
    the skipped files and, with ``keep_logits``, the logits rows of the shard in sample order."""

    def __init__(
        self, dataset: ImageDataset, num_classes: int, indices: range, skip_bad: bool, keep_logits: bool
    ):
        self.dataset, self.num_classes, self.indices, self.skip_bad = dataset, num_classes, indices, skip_bad
        self.out = EvalOutcome(first=indices.start, samples=len(indices), k5=min(5, num_classes))
        if keep_logits:
            self.out.logits = np.full((len(indices), num_classes), np.nan, np.float32)

    def add(self, batch, run) -> int:
        images, labels, index = (numpy(x) for x in batch)
        out = self.out
        ok = labels != BAD_LABEL
        if not ok.all():
            for i in index[~ok]:
                out.skipped.append(_bad_entry(self.dataset, int(i), self.skip_bad))
            images, labels, index = images[ok], labels[ok], index[ok]
        if len(index):
            logits = np.asarray(run(images), dtype=np.float32)
            if logits.shape != (len(index), self.num_classes):
                raise ValueError(
                    f"backend returned logits {logits.shape}, expected {(len(index), self.num_classes)}"
                )
            out.n += len(index)
            out.correct1 += int(topk_correct(logits, labels, 1).sum())
            out.correct5 += int(topk_correct(logits, labels, out.k5).sum())
            if out.logits is not None:
                out.logits[index - self.indices.start] = logits
        return int(ok.size)

    def flush(self, run) -> int:
        return 0

    def figures(self) -> dict[str, str]:
        return {"top1": f"{self.out.top1:.2f}"}

    def state(self) -> EvalOutcome:
        return self.out


@dataclass(kw_only=True)
class EvalRun:
    """How one evaluation pass runs and what it writes (``run_evaluation``); keyword-only."""

    batch_size: int = 64
    workers: int = 2
    skip_bad: bool = False
    save_logits_to: str | os.PathLike | None = None
    output: str | os.PathLike | None = None
    progress: bool = True


def evaluate(
    dataset: ImageDataset,
    predict_batch: PredictBatch,
    num_classes: int,
    run: EvalRun | None = None,
    keep_logits: bool = False,
    indices: range | None = None,
) -> EvalOutcome:
    """One pass in sample order; see the module docstring. ``dataset`` must use ``on_error="mark"``.

    run: batch size, workers, skip_bad, progress (its output paths are ``run_evaluation``'s). keep_logits: the
    outcome holds the logits rows. indices: a contiguous shard of the samples (``World.shard``) instead of all.
    """
    run = run or EvalRun()
    if dataset.on_error != "mark":
        raise ValueError("evaluate() needs ImageDataset(..., on_error='mark') to report bad files itself")
    indices = range(len(dataset)) if indices is None else indices
    if indices.step != 1 or not (0 <= indices.start <= indices.stop <= len(dataset)):
        raise ValueError(f"indices {indices} is not a contiguous part of the {len(dataset)} samples")
    acc = TopkAccumulator(dataset, num_classes, indices, run.skip_bad, keep_logits)
    source = Source(dataset, marked_sample(dataset), _collate, indices, run.batch_size, run.workers)
    part = run_inference(source, acc, predict_batch, run.progress)
    out = acc.out
    out.wall_s, out.model_s, out.data_wait_s = (
        part.timing.wall_s,
        part.timing.model_s,
        part.timing.data_wait_s,
    )
    return out


def merge_outcomes(parts: list[EvalOutcome]) -> EvalOutcome:
    """The outcome of the whole dataset from its consecutive shards' outcomes, in rank order (``World.gather``).

    Counts add up; skipped files and logits rows concatenate (contiguous shards in rank order: sample order);
    model and data-wait seconds add up (process-seconds), ``wall_s`` is the slowest shard's (the caller sets the
    run's own), and ``per_rank`` keeps each shard's share.
    """
    if not parts:
        raise ValueError("merge_outcomes needs at least one outcome")
    for a, b in itertools.pairwise(parts):
        if b.first != a.first + a.samples:
            raise ValueError(f"shards are not consecutive: [{a.first}, +{a.samples}) then [{b.first}, ...)")
    if len({p.k5 for p in parts}) != 1 or len({p.logits is None for p in parts}) != 1:
        raise ValueError("shards evaluated with different settings")
    merged = EvalOutcome(
        first=parts[0].first,
        samples=sum(p.samples for p in parts),
        n=sum(p.n for p in parts),
        correct1=sum(p.correct1 for p in parts),
        correct5=sum(p.correct5 for p in parts),
        k5=parts[0].k5,
        skipped=[entry for p in parts for entry in p.skipped],
        logits=None if parts[0].logits is None else np.concatenate([p.logits for p in parts]),
        wall_s=max(p.wall_s for p in parts),
        model_s=sum(p.model_s for p in parts),
        data_wait_s=sum(p.data_wait_s for p in parts),
    )
    merged.per_rank = [
        {
            "rank": r,
            "first": p.first,
            "samples": p.samples,
            "n": p.n,
            "wall_s": round(p.wall_s, 3),
            "model_s": round(p.model_s, 3),
            "data_wait_s": round(p.data_wait_s, 3),
        }
        for r, p in enumerate(parts)
    ]
    return merged


def _bad_entry(dataset: ImageDataset, index: int, skip_bad: bool) -> dict:
    """The error of a file the loader could not read, found again here: raised, or (``skip_bad``) recorded."""
    error = failure_of(dataset.samples.paths[index], lambda: dataset.load(index))
    if isinstance(error, LoaderOnlyFailure):  # readable now but not in the worker: worth stopping for
        raise error
    if not skip_bad:
        raise DataError(f"{error} (pass --skip-bad to skip unreadable images and list them)") from None
    return {"path": dataset.samples.relative(index), "error": str(error)}


_RUNTIMES = {
    "dygraph": "the Paddle model in eager mode, float32, exact",
    "inference": "Paddle Inference + oneDNN on an export, float32, within 1e-5 of dygraph",
    "inference_bf16": "Paddle Inference + oneDNN on an export, bfloat16; near-tie rows redone in float32",
    "onnxruntime": "ONNX Runtime on an ONNX export, float32, within 1e-5 of dygraph",
    "openvino": "OpenVINO on an ONNX export, float32, within 1e-5 of dygraph",
    "openvino_bf16": "OpenVINO on an ONNX export, bfloat16; near-tie rows redone in float32",
}


def runtime_line(backend: str, threads: int | None, processes: int = 1) -> str:
    """The one line ``eval`` prints before the work: the runtime, its precision, threads and processes.

    "within 1e-5 of dygraph": the relative error the tests hold the float32 runtimes to
    (the backend parity tests).
    """
    what = _RUNTIMES.get(backend, backend)
    cores = "every core" if threads is None else f"{threads} thread{'s' if threads != 1 else ''}"
    procs = f" in each of {processes} processes" if processes > 1 else ""
    return f"runtime: {backend} ({what}), {cores}{procs}"


def versions() -> dict[str, str]:
    """The versions a result records. Paddle's is read from its installed metadata when this process never
    imported it (a static runtime): importing Paddle only for its version costs 0.6 s."""
    from ..data.transforms import pillow_version
    from ..version import __version__

    paddle = sys.modules.get("paddle")
    return {
        "shunted": __version__,
        "paddle": paddle.__version__ if paddle is not None else _paddle_version(),
        "pillow": pillow_version(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _paddle_version() -> str:
    """Paddle's version from its installed metadata (the CPU or GPU wheel) without importing it; another
    packaging is imported for its ``__version__``."""
    from ..version import PADDLE_DISTRIBUTIONS, installed_version

    found = installed_version(*PADDLE_DISTRIBUTIONS)
    if found is not None:
        return found
    import paddle

    return paddle.__version__


def result_dict(outcome: EvalOutcome, **context) -> dict:
    """The JSON written by ``shunted eval --output`` (``context``: model, weights, data, preprocessing, …).

    timing: ``model_s`` and ``data_wait_s`` are summed over the processes (``per_rank``: each one's), so
    ``model_img_s`` is one process's model throughput; ``throughput_img_s`` is the run's (images / wall time).
    """
    n = outcome.n
    return {
        **context,
        "n": n,
        "top1": {"percent": round(outcome.top1, 4), "correct": outcome.correct1},
        f"top{outcome.k5}": {"percent": round(outcome.top5, 4), "correct": outcome.correct5},
        "skipped": outcome.skipped,
        "throughput_img_s": round(n / outcome.wall_s, 2) if outcome.wall_s else None,
        "wall_time_s": round(outcome.wall_s, 3),
        "timing": {
            "model_s": round(outcome.model_s, 3),
            "model_img_s": round(n / outcome.model_s, 2) if outcome.model_s else None,
            "data_wait_s": round(outcome.data_wait_s, 3),
            "per_rank": outcome.per_rank,
        },
        "versions": versions(),
    }


def format_table(result: dict) -> str:
    """The printed summary of an evaluation result."""
    k5 = next(
        (k for k in result if k.startswith("top") and k != "top1" and isinstance(result[k], dict)), "top5"
    )
    n = result["n"]
    rows = [
        ("model", result.get("model", "?")),
        (
            "weights",
            f"{result.get('weights', {}).get('path', '?')} (sha256 {result.get('weights', {}).get('sha256', '?')[:12]}…)",
        ),
        ("images", f"{n:,}" + (f" ({len(result['skipped'])} skipped)" if result["skipped"] else "")),
        ("top-1", f"{result['top1']['percent']:.2f} % ({result['top1']['correct']:,} / {n:,})"),
        (k5.replace("top", "top-"), f"{result[k5]['percent']:.2f} % ({result[k5]['correct']:,} / {n:,})"),
        ("throughput", f"{result['throughput_img_s']} img/s, {result['wall_time_s']:.1f} s wall"),
        (
            "model alone",
            f"{result['timing']['model_img_s']} img/s; waited {result['timing']['data_wait_s']:.1f} s for data",
        ),
    ]
    pre = result.get("preprocessing")
    if pre:
        rows.append(
            (
                "preprocessing",
                f"resize {pre['resize_short']} {pre['interpolation']}, crop {pre['img_size']}, Pillow {pre['pillow']}",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def save_logits(path: str | os.PathLike, logits: np.ndarray) -> None:
    """Rows in sample order (NaN rows for skipped files), written atomically as .npy."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, logits)


def save_result(path: str | os.PathLike, result: dict) -> None:
    write_json_atomic(Path(path), result)


def run_evaluation(
    predict_batch: PredictBatch,
    dataset: ImageDataset,
    num_classes: int,
    record: dict,
    run: EvalRun | None = None,
    world: World | None = None,
) -> dict | None:
    """Evaluate ``predict_batch`` on ``dataset``, write the outputs, return the result.

    record: what the result records about the run before its figures (model, weights, num_classes, data, ...);
    the preprocessing (``dataset.transform``), batch size, worker count and world size are added here.
    world: the processes sharing the work (module docstring); every rank calls this with the same dataset;
    rank 0 returns the result and writes the outputs, the other ranks return None and write nothing.
    """
    from ..errors import DataError

    world = world or World()
    run = run or EvalRun()
    batch_size, workers, save_logits_to, output = run.batch_size, run.workers, run.save_logits_to, run.output
    check_outputs([("--output", output), ("--save-logits", save_logits_to)])  # one would be lost
    for out_path in (save_logits_to, output):  # before the work: an unwritable location fails now
        if out_path is not None:
            check_output_file(out_path)
    check_same_samples(dataset, world)
    start = time.perf_counter()
    part = evaluate(
        dataset,
        predict_batch,
        num_classes,
        run,
        keep_logits=save_logits_to is not None,
        indices=world.shard(len(dataset), unit=batch_size),  # the batches of a one-process run
    )
    parts = world.gather(part)
    if not world.main:
        return None
    outcome = merge_outcomes(parts)
    outcome.wall_s = time.perf_counter() - start  # the run's: until the slowest shard was gathered
    if outcome.n == 0:  # no accuracy to report (NaN otherwise)
        raise DataError(
            f"{dataset.samples.root}: no image could be evaluated ({len(outcome.skipped)} unreadable, all skipped)"
        )
    result = result_dict(
        outcome,
        **record,
        preprocessing=dataset.transform.describe(),
        batch_size=batch_size,
        workers=workers,
        world_size=world.size,
    )
    if save_logits_to is not None:
        save_logits(save_logits_to, outcome.logits)
        result["logits"] = str(save_logits_to)
    if output is not None:
        save_result(output, result)
    return result


@dataclass
class EvalConfig(EvalRun):
    """What ``shunted eval`` runs (and, as an ``EvalRun``, how the pass runs) (``commands/eval.py`` builds it from ``-c`` / ``-o`` and the flags).

    ``num_classes``, when given, must match the checkpoint's head. Class folders map to class indices by name
    when the names are known (``class_names``, a file of one name per line, or what
    ``data/classnames.py:known_class_names`` finds beside the weights).
    """

    model: str
    weights: str | os.PathLike | None
    data: str | os.PathLike
    labels: str | os.PathLike | None = None
    class_names: str | os.PathLike | None = None
    num_classes: int | None = None
    img_size: int | None = None
    crop_pct: float | None = None
    resize_short: int | None = None
    interpolation: str | None = None
    limit: int | None = None
    backend: str = "dygraph"
    threads: int | None = None
    recheck_margin: float = DEFAULT_MARGIN
    cache: bool = True  # the start-up cache (shunted/runtime/cache.py); --no-cache


def evaluate_checkpoint(cfg: EvalConfig, opened=None, world: World | None = None) -> dict | None:
    """``shunted eval`` as a function: open the checkpoint on ``cfg.backend``, list the data, evaluate, write.

    ``world``: the processes sharing the work (``run_evaluation``); None on ranks other than 0.
    ``opened``: a checkpoint already opened (``shunted/engine/session.py``: ``open_model``, ``given_predictor``)
    instead of opening ``cfg.model`` / ``cfg.weights`` here.
    """
    from ..data.transforms import EvalTransform
    from ..models import get_pretrained_cfg

    # before the work: an output that is an input (the weights, an image), or both outputs one file, fails now
    check_outputs(
        [("--output", cfg.output), ("--save-logits", cfg.save_logits_to)],
        [("--weights", cfg.weights), ("--labels", cfg.labels), ("--class-names", cfg.class_names)],
        data=[("--data", cfg.data)],
    )
    for out_path in (cfg.save_logits_to, cfg.output):  # before the work: an unwritable location fails now
        if out_path is not None:
            check_output_file(out_path)
    transform = EvalTransform.from_config(
        get_pretrained_cfg(cfg.model),
        img_size=cfg.img_size,
        crop_pct=cfg.crop_pct,
        resize_short=cfg.resize_short,
        interpolation=cfg.interpolation,
    )
    if opened is None:
        opened = open_model(
            cfg.model,
            cfg.weights,
            RuntimeConfig(
                cfg.backend,
                threads=cfg.threads,
                img_size=transform.img_size,
                recheck_margin=cfg.recheck_margin,
                cache=cfg.cache,
            ),
            expect_num_classes=cfg.num_classes,
        )
    elif cfg.num_classes is not None and cfg.num_classes != opened.num_classes:
        raise ValueError(
            f"num_classes {cfg.num_classes} differs from the opened model's {opened.num_classes}"
        )
    dataset, record = checkpoint_dataset(opened, cfg.data, transform, cfg.labels, cfg.class_names, cfg.limit)
    return run_evaluation(opened.predictor, dataset, opened.num_classes, record, cfg, world=world)


def check_same_samples(dataset: ImageDataset, world: World) -> None:
    """Every process must list the same samples (relative paths and labels, compared by a digest): one
    ``--data`` seen alike by every node."""
    from ..errors import DataError

    if world.size == 1:
        return
    digest = hashlib.sha256()
    for i, label in enumerate(dataset.samples.labels):
        digest.update(f"{dataset.samples.relative(i)}\0{label}\n".encode("utf-8", "surrogateescape"))
    mine = [len(dataset), int.from_bytes(digest.digest()[:7], "big")]
    listed = world.gather_ints(mine)
    rank = first_different(listed)
    if rank is not None:
        theirs = listed[rank]
        raise DataError(
            f"{dataset.samples.root}: process {rank} lists {theirs[0]} samples, process 0 {listed[0][0]}"
            f"{'' if theirs[0] != listed[0][0] else ' (other files or labels)'}: every process must see the "
            "same --data (the same files on every node)"
        )


def checkpoint_dataset(
    opened,
    data: str | os.PathLike,
    transform,
    labels: str | os.PathLike | None = None,
    class_names: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[ImageDataset, dict]:
    """(dataset, record) to evaluate an opened checkpoint (``shunted/engine/session.py``) on ``data``.

    The record holds the model, the weights (path and SHA-256), the class count and the data description.
    """
    from ..data.classnames import known_class_names
    from ..data.datasets import list_samples

    known = None
    if labels is None or class_names is not None:
        known = known_class_names(
            opened.weights, opened.num_classes, class_names, sha256=opened.weights_sha256
        )
    samples = list_samples(
        data,
        labels=labels,
        num_classes=opened.num_classes,
        class_names=known.names if known else None,
        names_source=known.source if known else None,
    ).head(limit)
    record = {
        "model": opened.model_name,
        "weights": {"path": opened.weights, "sha256": opened.weights_sha256},
        "backend": opened.backend,
        "start_up_cache": opened.cached,  # the export came from the cache (None: dygraph or --no-cache)
        "num_classes": opened.num_classes,
        "data": {
            "root": str(samples.root),
            "labels": str(labels) if labels is not None else None,
            "layout": samples.layout,
            "class_map": samples.class_map,
            **samples.describe(),
            "samples": len(samples),
            "limit": limit,
        },
    }
    return ImageDataset(samples, transform, on_error="mark"), record
