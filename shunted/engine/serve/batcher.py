"""Dynamic batching: requests coalesced into batches on one worker thread (the one runtime instance).

``Batcher.submit(item)`` puts an item in a bounded queue and returns a ``concurrent.futures.Future``; a full
queue raises ``QueueFull`` at once (the caller answers 503). The worker takes the oldest item, waits until
``max_batch`` items are there or ``max_wait_ms`` have passed since that item arrived, and calls
``run_batch(items)`` with up to ``max_batch`` of them in arrival order. ``run_batch`` returns one result per
item (an ``Exception`` instance fails that item alone); if it raises, every item of the batch fails with it.
A future cancelled before its batch starts (the request timed out) is skipped. ``close()`` lets the worker
finish what is queued (drain) and stops it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


class QueueFull(Exception):
    """The queue holds ``max_queue`` items: the request is refused (503)."""


class Closed(Exception):
    """The batcher is draining or stopped: no new items."""


@dataclass(frozen=True)
class BatchLimits:
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_wait_ms < 0:
            raise ValueError(f"batch limits must be positive: {self}")


@dataclass
class _Job:
    item: Any
    future: Future
    arrived: float


class Batcher:
    """The queue and its worker (module docstring). ``on_batch(size)`` is told each batch's size."""

    def __init__(
        self,
        run_batch: Callable[[list], list],
        limits: BatchLimits,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.run_batch, self.limits, self.on_batch = run_batch, limits, on_batch
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="shunted-serve-batcher", daemon=True)

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def depth(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, item: Any) -> Future:
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise Closed("the server is shutting down")
            if len(self._queue) >= self.limits.max_queue:
                raise QueueFull(f"the queue holds {self.limits.max_queue} requests")
            self._queue.append(_Job(item, future, time.monotonic()))
            self._cond.notify()
        return future

    def close(self, timeout: float | None = None) -> None:
        """No new items; the queued ones still run; returns when the worker has finished them."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _next_batch(self) -> list[_Job] | None:
        wait_s = self.limits.max_wait_ms / 1000.0
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None  # closed and drained
            deadline = self._queue[0].arrived + wait_s
            while len(self._queue) < self.limits.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.limits.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while (jobs := self._next_batch()) is not None:
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]  # timed-out requests skipped
            if not jobs:
                continue
            if self.on_batch is not None:
                self.on_batch(len(jobs))
            try:
                results = self.run_batch([j.item for j in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(f"the batch of {len(jobs)} gave {len(results)} results")
            except BaseException as exc:  # noqa: BLE001 — the worker never dies on a batch; the requests fail
                for j in jobs:
                    j.future.set_exception(exc)
                continue
            for j, r in zip(jobs, results, strict=True):
                if isinstance(r, BaseException):
                    j.future.set_exception(r)
                else:
                    j.future.set_result(r)
