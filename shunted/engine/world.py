"""The processes of one run: rank and count under ``paddle.distributed.launch`` (one or many nodes), and the
collective operations the engines need. One process is ``World()`` (rank 0 of 1): every method then returns at
once without Paddle's process group.

Collectives (every process of the run must call them, in the same order):

- ``sum(values)``: element-wise float64 sum, on every rank (train's loss and accuracy sums).
- ``gather_ints(values)``: every rank's list of ints, on every rank.
- ``gather(obj)``: every rank's picklable ``obj`` (numpy arrays of any shape and size, dicts, lists), in rank
  order, on rank 0; ``None`` on the other ranks. Sizes may differ between ranks.
- ``broadcast(obj)``: rank 0's picklable ``obj`` on every rank.
- ``barrier()``: wait until every rank is here.
- ``broadcast_buffers(model)``: rank 0's BatchNorm statistics to every rank.

Not collective: ``shard(n, unit)``, the contiguous part of ``range(n)`` this rank works on: every index in
exactly one rank's part, the parts concatenated in rank order are ``range(n)``, and they split at multiples of
``unit`` (a batch size: each rank's batches are a one-process run's batches), in counts of units differing by at
most one;
``threads_per_process(world)``, the CPU threads each of the processes on one machine should use.

Failures: a process that raises exits, and ``paddle.distributed.launch`` stops the others and prints the
failed process's last log lines (its one-line ``shunted CMD: error: ...``). A collective that finds a peer gone
raises ``ShuntedError`` saying so instead of Paddle's transport error.

Paddle is imported only by a run of several processes (``_paddle()``): one process runs on a static runtime
without loading it (a warm ``shunted eval --backend openvino`` never imports Paddle).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ShuntedError

if TYPE_CHECKING:
    import paddle

GATHER_CHUNK = 1 << 26  # bytes per collective call of ``gather`` (bounds the temporary tensors: 64 MiB)


def _paddle():
    """(paddle, paddle.distributed), imported when a collective of several processes first needs them."""
    import paddle
    import paddle.distributed as dist

    return paddle, dist


def shard_bounds(n: int, size: int, unit: int = 1) -> list[int]:
    """``size + 1`` boundaries: rank r works on ``range(bounds[r], bounds[r + 1])``.

    The ``ceil(n / unit)`` units (the last one possibly short) are dealt out contiguously, the first ranks
    getting one unit more when they do not divide evenly; no index is dropped, a rank may get none."""
    if n < 0 or size < 1 or unit < 1:
        raise ValueError(f"shard_bounds({n}, {size}, {unit})")
    base, extra = divmod(-(-n // unit), size)
    return [min(n, (r * base + min(r, extra)) * unit) for r in range(size + 1)]


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_size: int = 1  # processes of this run on this machine (threads per process: cores // local_size)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int, unit: int = 1) -> range:
        """This rank's contiguous part of ``range(n)``, split at multiples of ``unit`` (see ``shard_bounds``)."""
        bounds = shard_bounds(n, self.size, unit)
        return range(bounds[self.rank], bounds[self.rank + 1])

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over processes (float64)."""
        if self.size == 1:
            return values
        paddle, dist = _paddle()
        t = paddle.to_tensor(np.asarray(values, np.float64))
        with _peer_errors("sum"):
            dist.all_reduce(t)
        return t.numpy().tolist()

    def broadcast_buffers(self, model: paddle.nn.Layer) -> None:
        """Give every process rank 0's BatchNorm statistics (what torch DDP's ``broadcast_buffers`` ends with)."""
        if self.size > 1:
            dist = _paddle()[1]  # Paddle's BatchNorm keeps its statistics as non-trainable parameters
            for value in model.state_dict().values():
                if value.stop_gradient:
                    dist.broadcast(value, src=0)

    def gather_ints(self, values: list[int]) -> list[list[int]]:
        if self.size == 1:
            return [values]
        paddle, dist = _paddle()
        out: list[paddle.Tensor] = []
        with _peer_errors("gather_ints"):
            dist.all_gather(out, paddle.to_tensor(np.asarray(values, np.int64)))
        return [t.numpy().tolist() for t in out]

    def gather(self, obj) -> list | None:
        """``[obj of rank 0, obj of rank 1, ...]`` on rank 0, ``None`` elsewhere (see the module docstring).

        The objects travel pickled, padded to the largest, in chunks of ``GATHER_CHUNK`` bytes.
        """
        if self.size == 1:
            return [obj]
        paddle, dist = _paddle()
        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        lengths = [n for (n,) in self.gather_ints([data.size])]
        longest = max(lengths)
        parts: list[list[np.ndarray]] = [[] for _ in range(self.size)]
        with _peer_errors("gather"):
            for start in range(0, longest, GATHER_CHUNK):
                piece = np.zeros(min(GATHER_CHUNK, longest - start), np.uint8)
                mine = data[start : start + piece.size]
                piece[: mine.size] = mine
                received: list[paddle.Tensor] = []
                dist.gather(paddle.to_tensor(piece), received if self.main else None, dst=0)
                for r, t in enumerate(received):
                    parts[r].append(t.numpy())
        if not self.main:
            return None
        return [pickle.loads(np.concatenate(p)[:n].tobytes()) for p, n in zip(parts, lengths, strict=True)]

    def broadcast(self, obj):
        """Rank 0's picklable ``obj`` on every rank (the others pass anything, e.g. None)."""
        if self.size == 1:
            return obj
        paddle, dist = _paddle()
        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        length = paddle.to_tensor(np.asarray([data.size if self.main else 0], np.int64))
        with _peer_errors("broadcast"):
            dist.broadcast(length, src=0)
            n = int(length.numpy()[0])
            buf = paddle.to_tensor(data if self.main else np.zeros(n, np.uint8))
            dist.broadcast(buf, src=0)
        return obj if self.main else pickle.loads(buf.numpy().tobytes())

    def barrier(self) -> None:
        if self.size > 1:
            with _peer_errors("barrier"):
                _paddle()[1].barrier()


class _peer_errors:
    """Paddle's transport error of a collective (a peer process exited) as one line."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, RuntimeError) and not issubclass(kind, ShuntedError):
            log_dir = os.environ.get("PADDLE_LOG_DIR", "log")
            raise ShuntedError(
                f"{self.what} across processes failed: another process of this run stopped "
                f"(its log in {log_dir}/workerlog.N says why)"
            ) from exc
        return False


def first_different(per_rank: list) -> int | None:
    """The first rank whose value (from ``gather_ints``) differs from rank 0's, or None when all agree."""
    return next((r for r, v in enumerate(per_rank) if v != per_rank[0]), None)


def threads_per_process(world: World) -> int | None:
    """CPU threads for each of ``world.local_size`` processes on one machine to share its cores; None (the
    runtime's default: every core) for a single process."""
    if world.local_size <= 1:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // world.local_size)


def init_world() -> World:
    """Join the process group when started by ``paddle.distributed.launch`` with more than one process."""
    size = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if size > 1:
        dist = _paddle()[1]
        dist.init_parallel_env()
        local = int(os.environ.get("PADDLE_LOCAL_SIZE", "0") or 0) or size
        return World(dist.get_rank(), dist.get_world_size(), local)
    return World()
