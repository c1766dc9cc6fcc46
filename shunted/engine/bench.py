"""CPU throughput of the inference backends, measured next to the PyTorch reference in the same run.

Method: every backend of one (model, batch size) gets the same input and the same weights; after warm-up the
backends are timed in turn, one call each per round, the order rotating between rounds, so background load (the
machine may be shared) hits all of them alike; the median per backend is reported. Between two timed calls the
process pauses briefly: Paddle's OpenMP runtime (libiomp5) keeps its threads spinning for up to 200 ms after a
parallel region, which would otherwise slow whichever runtime runs next.

The PyTorch yardstick is an independent transcription of the official model
(``shunted/runtime/torch_reference.py``), loaded with the same weights and thread count, in a child process of
its own (``shunted/runtime/torch_worker.py``); it is used only when torch is importable. The package never needs
torch. It runs under the same glibc allocator policy as this process (``shunted/cpu_memory.py``: the ``shunted`` command
keeps freed memory in the heap, which speeds PyTorch up as much as Paddle); ``stock_torch_allocator`` times
PyTorch with glibc's defaults instead, as a plain ``python`` process runs it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..cpu_memory import memory_kept
from ..runtime import BENCH_BACKENDS as ALL_BACKENDS
from ..runtime import DEFAULT_BENCH_BACKENDS, DEFAULT_MARGIN, TORCH_BACKENDS
from ..runtime.dygraph import set_paddle_threads
from ..runtime.torch_worker import TorchPredictor
from ..runtime.torch_worker import available as torch_available
from .export import rel_err
from .session import missing_for, model_predictor, open_model

SEED = 0


@dataclass
class Record:
    """One JSON record of ``shunted bench --json``."""

    model: str
    batch_size: int
    backend: str
    img_per_s: float
    ms_per_batch: float
    img_size: int = 224
    threads: int = 2
    rel_err_vs_dygraph: float | None = None
    rechecked: float | None = None  # *_bf16 backends: fraction of rows recomputed in fp32
    # the model's FLOPs per second (2 × MACs × img/s) as a share of the GEMM peak at this precision (cpu_peak.py)
    share_of_gemm_peak: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def torch_predictor(
    model, threads: int, compile: bool = False, stock_allocator: bool = False
) -> TorchPredictor:
    """The PyTorch reference with ``model``'s weights (converted to the official layout), in a child process.

    It runs under this process's allocator policy (``shunted/cpu_memory.py``) unless ``stock_allocator``.
    """
    from ..convert.mapping import paddle_to_torch
    from ..models.weights import state_dict_numpy

    state = paddle_to_torch(state_dict_numpy(model))
    keep_memory = not stock_allocator and memory_kept()
    return TorchPredictor(model.variant.name, model.num_classes, state, threads, compile, keep_memory)


def available_backends(requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """(usable, skipped-with-reason) among ``requested``."""
    usable, skipped = [], []
    for b in requested:
        if b in TORCH_BACKENDS and not torch_available():
            skipped.append(f"{b} (torch is not installed)")
        elif b not in TORCH_BACKENDS and missing_for(b) is not None:
            skipped.append(f"{b} ({missing_for(b)})")
        else:
            usable.append(b)
    return usable, skipped


def build_predictors(
    model,
    backends: Sequence[str],
    threads: int,
    img_size: int,
    stock_torch_allocator: bool = False,
    recheck_margin: float = DEFAULT_MARGIN,
) -> dict[str, Callable]:
    predictors = {}
    for b in backends:
        if b in TORCH_BACKENDS:
            predictors[b] = torch_predictor(
                model, threads, compile=b == "torch_compile", stock_allocator=stock_torch_allocator
            )
        else:
            predictors[b] = model_predictor(b, model, threads, img_size, recheck_margin)
    set_paddle_threads(threads)
    return predictors


def time_interleaved(
    predictors: dict[str, Callable],
    batches: Sequence[np.ndarray],
    repeats: int,
    warmup: int,
    pause: float,
    mean: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Seconds per call of each predictor (median, or ``mean``), timed in rotating order; round r feeds
    ``batches[r % len(batches)]`` to every predictor. Also returns each one's output for the first batch."""
    outputs = {}
    for name, predict in predictors.items():
        for i in range(max(warmup, 1)):
            y = predict(batches[0])
            if i == 0:
                outputs[name] = y
        if hasattr(predict, "stats"):  # count the timed calls only
            predict.stats.update(rows=0, rechecked=0)
    names = list(predictors)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        x = batches[r % len(batches)]
        for name in names[r % len(names) :] + names[: r % len(names)]:
            time.sleep(pause)
            predict = predictors[name]
            start = time.perf_counter()
            predict(x)
            elapsed = time.perf_counter() - start
            times[name].append(getattr(predict, "last_seconds", elapsed))
    average = statistics.mean if mean else statistics.median
    return {n: average(t) for n, t in times.items()}, outputs


def image_batches(data, model_name: str, img_size: int, batch_size: int, count: int) -> list[np.ndarray]:
    """``count`` batches of real images from a dataset folder (official eval preprocessing), evenly spaced over
    the sorted file list (class-folder datasets are sorted by class: every class is represented)."""
    from ..data.datasets import list_samples
    from ..data.transforms import EvalTransform
    from ..errors import DataError
    from ..models import get_pretrained_cfg

    paths = list_samples(data).paths
    if len(paths) < batch_size * count:
        raise DataError(f"{data}: {len(paths)} images; the benchmark needs {batch_size * count}")
    transform = EvalTransform.from_config(get_pretrained_cfg(model_name), img_size=img_size)
    picked = np.linspace(0, len(paths) - 1, batch_size * count).round().astype(int)
    images = np.stack([transform.load(paths[i]) for i in picked])
    return list(images.reshape(count, batch_size, *images.shape[1:]))


def open_inputs(models: Sequence[str], weights, data, batch_sizes: Sequence[int], repeats: int) -> dict:
    """Check the user's inputs before any timing: the checkpoint ``weights`` is loaded (returned as
    ``{model name: model}`` for ``run_bench(preloaded=...)``), the folder ``data`` listed and counted. A missing or
    unreadable input is a one-line error (ShuntedError subclasses) instead of a failure after the first timings."""
    from ..data.datasets import list_samples
    from ..errors import DataError

    if data is not None:
        count = len(list_samples(data).paths)
        needed = max(batch_sizes) * repeats
        if count < needed:
            raise DataError(f"{data}: {count} images; the benchmark needs {needed}")
    if weights is None:
        return {}
    return {name: open_model(name, weights).model for name in models}


@dataclass
class BenchConfig:
    """What ``shunted bench`` measures (``run_bench``).

    By default a seeded fresh model times a random input. ``weights`` (a checkpoint, one model only) and ``data``
    (an image folder: a different batch of real images in each round, and the mean time per call instead of
    the median) measure what the data changes: the bf16 backend's fp32 recheck of near-tied rows, whose margin
    is ``recheck_margin``. ``gemm_peak``: also measure the GEMM peak (``shunted/runtime/cpu_peak.py``) and each
    backend's share of it.
    """

    models: Sequence[str] = ("shunted_t",)
    batch_sizes: Sequence[int] = (1, 8)
    img_size: int = 224
    threads: int = 2
    backends: Sequence[str] = DEFAULT_BENCH_BACKENDS
    repeats: int = 15
    warmup: int = 2
    pause: float = 0.25
    stock_torch_allocator: bool = False
    weights: Path | None = None
    data: Path | None = None
    recheck_margin: float = DEFAULT_MARGIN
    gemm_peak: bool = True
    peaks: dict = field(default_factory=dict)  # filled by run_bench: {"f32": GFLOP/s, "bf16": GFLOP/s}


def measure_peaks(threads: int, log: Callable[[str], None] = print) -> dict:
    """The CPU line and the GEMM fp32 / bf16 peaks on ``threads`` threads (GFLOP/s; {} without OpenVINO)."""
    from ..runtime.cpu_peak import GEMM_SIZE, cpu_info, gemm_peak

    log(cpu_info().describe())
    peaks = {p: gemm_peak(threads, p) for p in ("f32", "bf16")}
    if peaks["f32"] is None:
        log("GEMM peak: not measured (OpenVINO is not installed)")
        return {}
    log(
        f"GEMM peak ({GEMM_SIZE}³ MatMul, OpenVINO, {threads} threads, best of 16): "
        f"fp32 {peaks['f32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s"
    )
    return peaks


def _share(backend: str, img_per_s: float, gmacs: float, peaks: dict) -> float | None:
    peak = peaks.get("bf16" if backend.endswith("_bf16") else "f32")
    return 2 * gmacs * img_per_s / peak if peak else None


def run_bench(
    config: BenchConfig, log: Callable[[str], None] = print, preloaded: dict | None = None
) -> list[Record]:
    """Measure every (model, batch size, backend) of ``config``; returns the records (also logged as they are
    measured). ``preloaded``: models already opened by :func:`open_inputs` (by name)."""
    import paddle

    from .summary import count_macs

    c = config
    records = []
    if c.gemm_peak and not c.peaks:
        c.peaks = measure_peaks(c.threads, log)
    set_paddle_threads(c.threads)
    for name in c.models:
        paddle.seed(SEED)
        model = (preloaded or {}).get(name)
        if model is None:
            model = open_model(name, c.weights).model
        gmacs = count_macs(model, c.img_size).total / 1e9
        predictors = build_predictors(
            model, c.backends, c.threads, c.img_size, c.stock_torch_allocator, c.recheck_margin
        )
        for bs in c.batch_sizes:
            if c.data is None:
                shape = (bs, 3, c.img_size, c.img_size)
                batches = [np.random.default_rng(SEED).standard_normal(shape, np.float32)]
            else:
                batches = image_batches(c.data, name, c.img_size, bs, c.repeats)
            seconds, outputs = time_interleaved(
                predictors, batches, c.repeats, c.warmup, c.pause, mean=c.data is not None
            )
            reference = outputs.get("dygraph")
            for b in c.backends:
                sec = seconds[b]
                err = rel_err(outputs[b], reference) if reference is not None else None
                stats = getattr(predictors[b], "stats", None)
                share = stats["rechecked"] / stats["rows"] if stats and stats["rows"] else None
                records.append(
                    Record(
                        name,
                        bs,
                        b,
                        bs / sec,
                        sec * 1e3,
                        c.img_size,
                        c.threads,
                        err,
                        share,
                        _share(b, bs / sec, gmacs, c.peaks),
                    )  # fmt: skip
                )
            log(format_rows(records[-len(c.backends) :]))
        for p in predictors.values():
            if hasattr(p, "close"):
                p.close()
        del predictors
    return records


def format_rows(records: Sequence[Record]) -> str:
    """Plain-text lines for one (model, batch) group, with the ratio to torch when measured."""
    torch_ips = next((r.img_per_s for r in records if r.backend == "torch"), None)
    lines = []
    for r in records:
        ratio = f"{r.img_per_s / torch_ips:5.2f}× torch" if torch_ips else ""
        err = f"rel err {r.rel_err_vs_dygraph:.1e}" if r.rel_err_vs_dygraph is not None else ""
        if r.rechecked is not None:
            err += f"  {100 * r.rechecked:.1f} % rows rechecked in fp32"
        if r.share_of_gemm_peak is not None:
            err += f"  {100 * r.share_of_gemm_peak:.0f} % of the GEMM peak"
        lines.append(
            f"{r.model:10s} bs {r.batch_size:<3d} {r.backend:15s} {r.img_per_s:8.2f} img/s "
            f"{r.ms_per_batch:9.1f} ms/batch  {ratio:13s} {err}"
        )
    return "\n".join(lines)


def markdown_table(records: Sequence[dict]) -> str:
    """The README table: one row per (model, batch size), img/s per backend with the ratio to torch eager."""
    backends = [b for b in ALL_BACKENDS if any(r["backend"] == b for r in records)]
    groups: dict[tuple[str, int], dict[str, dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["batch_size"]), {})[r["backend"]] = r
    header = ["model", "batch", *(f"{b} img/s" for b in backends)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(backends)]
    for (model, bs), row in groups.items():
        torch_ips = row.get("torch", {}).get("img_per_s")
        cells = []
        for b in backends:
            if b not in row:
                cells.append("–")
                continue
            ips = row[b]["img_per_s"]
            ratio = f" ({ips / torch_ips:.2f}×)" if torch_ips and b != "torch" else ""
            cells.append(f"{ips:.1f}{ratio}")
        lines.append(f"| {model} | {bs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
