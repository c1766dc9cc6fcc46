"""The processes of one run: rank and count under ``paddle.distributed.launch`` (one or many nodes), and the
collective operations the engines need (sums, gathers, broadcasts). One process is ``World()`` (rank 0 of 1)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over processes (float64)."""
        if self.size == 1:
            return values
        t = paddle.to_tensor(np.asarray(values, np.float64))
        dist.all_reduce(t)
        return t.numpy().tolist()

    def broadcast_buffers(self, model: paddle.nn.Layer) -> None:
        """Give every process rank 0's BatchNorm statistics (what torch DDP's ``broadcast_buffers`` ends with)."""
        if self.size > 1:  # Paddle's BatchNorm keeps its statistics as non-trainable parameters
            for value in model.state_dict().values():
                if value.stop_gradient:
                    dist.broadcast(value, src=0)

    def gather_ints(self, values: list[int]) -> list[list[int]]:
        if self.size == 1:
            return [values]
        out: list[paddle.Tensor] = []
        dist.all_gather(out, paddle.to_tensor(np.asarray(values, np.int64)))
        return [t.numpy().tolist() for t in out]


def init_world() -> World:
    """Join the process group when started by ``paddle.distributed.launch`` with more than one process."""
    size = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if size > 1:
        dist.init_parallel_env()
        return World(dist.get_rank(), dist.get_world_size())
    return World()
