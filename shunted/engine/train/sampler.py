"""Repeated augmentation (DeiT's ``RASampler``, on by default in the official ``main.py``) as a Paddle BatchSampler.

Each epoch: a permutation of the n images seeded by (seed, epoch); every index repeated ``repeats`` times in a
row; padded to a multiple of the process count; process r takes positions r, r + world, …; each keeps the first
floor(n // 256 · 256 / world) (n // world when n < 256, where DeiT's rule would leave nothing). An epoch thus
shows ~n/3 distinct images, each three times with different augmentations, mostly on different processes.
Batches hold ``(index, repeat)`` keys so the dataset seeds each copy's augmentation differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from paddle.io import BatchSampler


class RepeatedAugBatchSampler(BatchSampler):
    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        repeats: int = 3,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        self.n, self.batch_size, self.repeats = num_samples, batch_size, repeats
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.per_rank_padded = math.ceil(num_samples * repeats / num_replicas)
        kept = num_samples // 256 * 256 if num_samples >= 256 else num_samples
        self.per_rank = kept // num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def keys(self) -> list[tuple[int, int]]:
        """This process's (index, repeat) keys for the current epoch, in order."""
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        keys = [(int(i), k) for i in order for k in range(self.repeats)]
        total = self.per_rank_padded * self.num_replicas
        keys += keys[: total - len(keys)]
        return keys[self.rank : total : self.num_replicas][: self.per_rank]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        keys = self.keys()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield keys[start : start + self.batch_size]

    def __len__(self) -> int:
        return self.per_rank // self.batch_size  # drop_last
