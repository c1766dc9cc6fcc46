"""CPU throughput of the inference backends, measured next to the PyTorch reference in the same run.

Method: every backend of one (model, batch size) gets the same input and the same weights; after warm-up the
backends are timed in turn, one call each per round, the order rotating between rounds, so background load (the
machine may be shared) hits all of them alike; the median per backend is reported. Between two timed calls the
process pauses briefly: Paddle's OpenMP runtime (libiomp5) keeps its threads spinning for up to 200 ms after a
parallel region, which would otherwise slow whichever runtime runs next.

The PyTorch yardstick is the tests' independent transcription of the official model
(``tests/reference/shunted_torch.py``), loaded with the same weights and thread count; it is used only when torch
is importable and the file is present (a source checkout). The package never needs torch. It runs in a separate
process (no Paddle in it): in one process, Paddle's libiomp5 and torch's libgomp OpenMP runtimes interfere and
torch ran 2–3× slower than on its own. The worker times its own calls, so the pipe is not in the figure.
It runs under the same glibc allocator policy as this process (``shunted/cpu_memory.py``: the ``shunted`` command
keeps freed memory in the heap, which speeds PyTorch up as much as Paddle); ``stock_torch_allocator`` times
PyTorch with glibc's defaults instead, as a plain ``python`` process runs it.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..cpu_memory import memory_kept
from .backends import BACKENDS, ONNX_BACKENDS, make_predictor, set_paddle_threads
from .export import rel_err

TORCH_BACKENDS = ("torch", "torch_compile")
ALL_BACKENDS = BACKENDS + TORCH_BACKENDS
DEFAULT_BACKENDS = (
    "dygraph",
    "inference",
    "inference_bf16",
    "onnxruntime",
    "openvino",
    "openvino_bf16",
    "torch",
)
REFERENCE_FILE = Path(__file__).resolve().parents[2] / "tests" / "reference" / "shunted_torch.py"
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

    def to_dict(self) -> dict:
        return asdict(self)


def torch_reference():
    """The PyTorch transcription module, or None (torch missing, or not a source checkout)."""
    if importlib.util.find_spec("torch") is None or not REFERENCE_FILE.is_file():
        return None
    spec = importlib.util.spec_from_file_location("shunted_torch_reference", REFERENCE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _torch_worker() -> None:
    """Child process (``python -c``): build the reference, then answer arrays with (seconds, output) until None.

    Messages are pickles on stdin / the original stdout; anything else the child prints goes to stderr.
    """
    import pickle
    import time as _time

    import torch

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    reference_file, variant, num_classes, state, threads, compile, keep_memory = pickle.load(inp)
    if keep_memory:
        from ..cpu_memory import keep_freed_memory

        keep_freed_memory()
    spec = importlib.util.spec_from_file_location("shunted_torch_reference", reference_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    torch.set_num_threads(threads)
    net = module.build(variant, num_classes=num_classes)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    net.eval()
    runner = torch.compile(net) if compile else net

    def reply(obj) -> None:
        pickle.dump(obj, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    reply("ready")
    while (x := pickle.load(inp)) is not None:
        with torch.inference_mode():
            start = _time.perf_counter()
            y = runner(torch.from_numpy(x)).numpy()
            reply((_time.perf_counter() - start, y))


class TorchPredictor:
    """The reference PyTorch model with the Paddle model's weights (official layout), in a child process.

    Calling it returns the output; ``last_seconds`` is the time the child measured for that call.
    """

    def __init__(self, model, threads: int, compile: bool = False, stock_allocator: bool = False):
        from ..convert.mapping import paddle_to_torch
        from ..models.weights import state_dict_numpy

        state = {k: np.ascontiguousarray(v) for k, v in paddle_to_torch(state_dict_numpy(model)).items()}
        # Importing Paddle sets OMP_NUM_THREADS=1 in this process's environment: not for the child.
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from shunted.engine.bench import _torch_worker; _torch_worker()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        # Same allocator policy as this process (cpu_memory.py) unless asked for PyTorch's stock behaviour.
        keep_memory = not stock_allocator and memory_kept()
        self._send(
            (str(REFERENCE_FILE), model.variant.name, model.num_classes, state, threads, compile, keep_memory)
        )
        if self._recv() != "ready":
            raise RuntimeError("the PyTorch reference worker did not start")
        self.last_seconds = 0.0

    def _send(self, obj) -> None:
        pickle.dump(obj, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self._proc.stdin.flush()

    def _recv(self):
        try:
            return pickle.load(self._proc.stdout)
        except EOFError:
            raise RuntimeError(f"the PyTorch reference worker exited (status {self._proc.wait()})") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._send(np.ascontiguousarray(x, dtype=np.float32))
        self.last_seconds, y = self._recv()
        return y

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._send(None)
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def available_backends(requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """(usable, skipped-with-reason) among ``requested``."""
    usable, skipped = [], []
    for b in requested:
        if b in TORCH_BACKENDS and torch_reference() is None:
            skipped.append(f"{b} (torch or tests/reference/shunted_torch.py unavailable)")
        elif b in ONNX_BACKENDS and (
            importlib.util.find_spec(ONNX_BACKENDS[b]) is None
            or importlib.util.find_spec("paddle2onnx") is None
        ):
            skipped.append(
                f"{b} (pip install 'shunted-paddle[{'onnx' if b == 'onnxruntime' else 'openvino'}]')"
            )
        else:
            usable.append(b)
    return usable, skipped


def build_predictors(
    model, backends: Sequence[str], threads: int, img_size: int, stock_torch_allocator: bool = False
) -> dict[str, Callable]:
    predictors = {}
    for b in backends:
        if b in TORCH_BACKENDS:
            predictors[b] = TorchPredictor(
                model, threads, compile=b == "torch_compile", stock_allocator=stock_torch_allocator
            )
        else:
            predictors[b] = make_predictor(b, model, threads, img_size=img_size)
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


def run_bench(
    models: Sequence[str],
    batch_sizes: Sequence[int],
    img_size: int,
    threads: int,
    backends: Sequence[str],
    repeats: int,
    warmup: int = 2,
    pause: float = 0.25,
    log: Callable[[str], None] = print,
    stock_torch_allocator: bool = False,
    weights=None,
    data=None,
) -> list[Record]:
    """Measure every (model, batch size, backend); returns the records (also logged as they are measured).

    By default a seeded fresh model times a random input. ``weights`` (a checkpoint, one model only) and ``data``
    (an image folder: a different batch of real images in each round, and the mean time per call instead of
    the median) measure what the data changes: the bf16 backend's fp32 recheck of near-tied rows.
    """
    import paddle

    from ..factory import create_model

    records = []
    set_paddle_threads(threads)
    for name in models:
        paddle.seed(SEED)
        model = create_model(name, pretrained=weights)
        model.eval()
        predictors = build_predictors(model, backends, threads, img_size, stock_torch_allocator)
        for bs in batch_sizes:
            if data is None:
                batches = [
                    np.random.default_rng(SEED).standard_normal((bs, 3, img_size, img_size), np.float32)
                ]
            else:
                batches = image_batches(data, name, img_size, bs, repeats)
            seconds, outputs = time_interleaved(
                predictors, batches, repeats, warmup, pause, mean=data is not None
            )
            reference = outputs.get("dygraph")
            for b in backends:
                sec = seconds[b]
                err = rel_err(outputs[b], reference) if reference is not None else None
                stats = getattr(predictors[b], "stats", None)
                share = stats["rechecked"] / stats["rows"] if stats and stats["rows"] else None
                records.append(Record(name, bs, b, bs / sec, sec * 1e3, img_size, threads, err, share))
            log(format_rows(records[-len(backends) :]))
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


# Issue 6 targets: img/s ratio to PyTorch eager at batch 8 (224 px, 2 threads on the reference machine).
# The "fastest shipped path" target (2.0x) is shown for every candidate; a bf16 one counts only with the agreement.
TARGETS = {
    "openvino_bf16": 2.0,
    "inference_bf16": 2.0,
    "openvino": 2.0,
    "onnxruntime": 2.0,
    "inference": 1.5,
    "dygraph": 0.7,
}
BF16_COUNTS_IF = "counts only if top-1 agrees with fp32 on >= 99.9 % (benchmarks/bf16_agreement.py)"
TARGET_WHY = {
    "dygraph": "Paddle's eager CPU kernels: conv2d ~29 %, depthwise conv ~27 % (3x slower than PyTorch's), matmul "
    "~15 % of the time",
    "inference": "oneDNN fp32 convolutions (1x1 feed-forward and depthwise) are ~60 % of the time",
    "onnxruntime": "ORT Conv/MatMul are ~75 % of the time; no bf16 on CPU",
    "inference_bf16": BF16_COUNTS_IF,
    "openvino": "fp32 Conv/MatMul near the fp32 limit of the cores; the bf16 paths are the fast ones",
    "openvino_bf16": BF16_COUNTS_IF,
}


def target_lines(records: Sequence[Record], batch_size: int = 8) -> list[str]:
    """How each backend stands against the issue's speed targets (needs the torch measurement)."""
    lines = []
    groups: dict[str, dict[str, float]] = {}
    for r in records:
        if r.batch_size == batch_size:
            groups.setdefault(r.model, {})[r.backend] = r.img_per_s
    for model, row in groups.items():
        if "torch" not in row:
            continue
        for backend, target in TARGETS.items():
            if backend not in row:
                continue
            ratio = row[backend] / row["torch"]
            if ratio >= target:
                verdict = "met" + (f" on speed; {TARGET_WHY[backend]}" if backend.endswith("_bf16") else "")
            else:
                verdict = f"MISSED by {100 * (1 - ratio / target):.0f} %: {TARGET_WHY[backend]}"
            lines.append(
                f"target {model} bs {batch_size} {backend} >= {target}x torch: {ratio:.2f}x {verdict}"
            )
    return lines
