"""One batch-inference loop for every task: reading with its guard, progress, timing, sharding, gathering.

``eval`` (top-k counts and logits rows), ``seg-eval`` / ``seg-predict`` (a confusion matrix, masks) and the next
task (detections) run the same pass; what a task adds is an **accumulator** (``Accumulator``):

- ``add(batch, run)``: one loader batch (what the task's ``collate`` made of ``Source.dataset`` items); ``run``
  is the model function, timed by the loop (call it on float32 NCHW arrays). Returns how many samples the
  batch finished (the progress bar's step). A sample the loader could not read arrives as the task's
  ``Source.placeholder(index)``: the accumulator decides (stop with ``failure_of``'s one line, or record it).
- ``flush(run)``: the end of the shard; anything the accumulator held back (seg batches images of one size).
  Returns the samples it finished.
- ``figures()``: ``{name: text}`` shown beside the progress bar (``top1``, ``miou``…).
- ``state()``: what this rank contributes, picklable (numpy arrays, dicts, lists of any length: detections
  per image). ``run_inference`` returns ``Part(state, timing)``; ``gather_parts`` brings every rank's part to
  rank 0 in rank order (``World.gather``), where the task merges them (sum matrices, concatenate rows…).

Sharding (``Source.indices``): each rank's contiguous part of the samples, ``World.shard(n, unit)``; with
``unit`` the batch size every rank's batches are a one-process run's batches, so a task whose outputs depend on
the batch composition (none should, but a backend can) still merges to the one-process result. Parts
concatenated in rank order are sample order.

Reading: ``dataset[key]`` is read in ``workers`` threads of this process (0: in the loop itself, between
batches) at most two batches ahead; a key whose read raises becomes ``placeholder(key)``. Threads, not loader
processes: Pillow decodes and resizes and numpy normalises without holding the GIL, the runtimes compute
without it, and no process is started or fed (measured in benchmarks/README.md, "Fast by default"). Paddle is not
imported here: a static runtime runs the whole pass without it.

A **stream** (``predict``): ``Source.indices`` an iterator rather than a sequence, consumed as it goes, so a
listing of any length is never held (``total``, when known, is only the progress bar's); nothing is sharded
here (the caller's iterator is this rank's share already). A task that writes per batch does it in ``add``
(predict's accumulator writes and fsyncs its lines there).

Timing (``Timing``): ``wall_s`` this rank's pass; ``model_s`` inside ``run``; ``data_wait_s`` waiting for the
loader. A task's result records them per rank (eval's ``timing.per_rank``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .world import World

Run = Callable[[np.ndarray], Any]


class Accumulator(Protocol):
    """A task's share of one inference pass (module docstring)."""

    def add(self, batch: Any, run: Run) -> int: ...

    def flush(self, run: Run) -> int: ...

    def figures(self) -> dict[str, str]: ...

    def state(self) -> Any: ...


@dataclass
class Source:
    """What the loop reads: ``dataset[i]`` for ``i`` in ``indices``, read in ``workers`` threads, ``batch_size``
    items put together by ``collate``; an item that raises becomes ``placeholder(i)``.

    ``indices`` an iterator (not a sequence): a stream (module docstring), ``total`` its length if known."""

    dataset: Any
    placeholder: Callable[[Any], Any]
    collate: Callable[[list], Any]
    indices: Sequence[int] | Iterator[Any]
    batch_size: int = 1
    workers: int = 0
    total: int | None = None

    @property
    def stream(self) -> bool:
        return not hasattr(self.indices, "__len__")


@dataclass
class Timing:
    wall_s: float = 0.0
    model_s: float = 0.0
    data_wait_s: float = 0.0

    def rounded(self) -> dict[str, float]:
        return {"wall_s": round(self.wall_s, 3), "model_s": round(self.model_s, 3),
                "data_wait_s": round(self.data_wait_s, 3)}  # fmt: skip


@dataclass
class Part:
    """One rank's outcome: its accumulator's ``state()`` and its timing."""

    state: Any
    timing: Timing = field(default_factory=Timing)
    samples: int = 0


def run_inference(source: Source, acc: Accumulator, run: Run, progress: bool = True) -> Part:
    """One pass over ``source`` feeding ``acc`` (module docstring); the model is ``run``."""
    timing = Timing()

    def timed(x):
        t0 = time.perf_counter()
        try:
            return run(x)
        finally:
            timing.model_s += time.perf_counter() - t0

    total = source.total if source.stream else len(source.indices)
    samples = 0
    start = time.perf_counter()
    if source.stream or total:
        from tqdm import tqdm

        bar = tqdm(
            total=total, unit="img", disable=None if progress else True, dynamic_ncols=True, leave=False
        )
        try:
            wait_from = start
            for batch in stream_batches(source):
                timing.data_wait_s += time.perf_counter() - wait_from
                done = acc.add(batch, timed)
                samples += done
                if done:
                    _show(bar, done, acc, start)
                wait_from = time.perf_counter()
            done = acc.flush(timed)
            samples += done
            if done:
                _show(bar, done, acc, start)
        finally:
            bar.close()
    timing.wall_s = time.perf_counter() - start
    return Part(acc.state(), timing, samples if source.stream else total)


def gather_parts(part: Part, world: World) -> list[Part] | None:
    """Every rank's ``Part`` on rank 0 in rank order (None elsewhere); a collective: every rank calls it."""
    return world.gather(part)


def per_rank(parts: list[Part], **counts: Callable[[Any], int]) -> list[dict]:
    """Each rank's share for a result's ``timing.per_rank``: rank, samples, ``counts`` of its state, timing."""
    return [
        {"rank": r, "samples": p.samples, **{k: f(p.state) for k, f in counts.items()}, **p.timing.rounded()}
        for r, p in enumerate(parts)
    ]


def _show(bar, done: int, acc: Accumulator, start: float) -> None:
    bar.update(done)
    elapsed = max(time.perf_counter() - start, 1e-9)
    bar.set_postfix(**acc.figures(), img_s=f"{bar.n / elapsed:.1f}", refresh=False)


def stream_batches(source: Source) -> Iterator[Any]:
    """The source's batches (module docstring): ``collate`` of ``batch_size`` read items, in key order."""
    batch: list = []
    for item in _read_ahead(source.indices, source, 2 * source.batch_size):
        batch.append(item)
        if len(batch) == source.batch_size:
            yield source.collate(batch)
            batch = []
    if batch:
        yield source.collate(batch)


def _read_ahead(keys: Iterable[Any], source: Source, window: int) -> Iterator[Any]:
    def read(key):
        try:
            return source.dataset[key]
        except Exception:  # noqa: BLE001 — the task's placeholder says it (as MarkFailures does)
            return source.placeholder(key)

    if source.workers <= 0:
        for key in keys:
            yield read(key)
        return
    pool = ThreadPoolExecutor(source.workers, thread_name_prefix="shunted-decode")
    try:
        pending: deque = deque()
        for key in keys:
            pending.append(pool.submit(read, key))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # an error, Ctrl-C or SIGTERM stops at once: the reads not started are dropped, none waited for
        pool.shutdown(wait=False, cancel_futures=True)


def numpy(x) -> np.ndarray:
    """A loader's field as a numpy array (Paddle tensors from worker processes, arrays in-process)."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)
