"""Which global samples one consumer (rank, data-loader worker) reads.

Ranks split the global stream by row group, not by position, so that a rank decodes only
the row groups whose rows it keeps. The unit at place j of source s's unit order in
epoch e (`reader.shuffle.EpochPlan.positions`) belongs to rank
`(base[s] + e * units[s] + j) % world_size`, where `units[s]` is the source's row-group
count and `base[s]` that of the sources before it: row groups are dealt round robin,
continuing across sources and epochs, so every rank owns within one row group of its
share of each source and of the whole. Every row of the unit goes to that rank.

Rank r's batches are its own samples in global order, `batch_size` at a time (batch n is
its samples [nB, (n+1)B)); data-loader worker k of the rank builds the batches n with
n % num_workers == k (the order in which a PyTorch DataLoader collects them). The ranks
together read every sample of the global stream once; `reader.scan` walks the stream and
says where each rank stands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from reader.index import Source


@dataclasses.dataclass(frozen=True)
class Consumer:
    """One reader of the global stream. Invariant: 0 <= rank < world_size, 0 <= worker < num_workers."""

    batch_size: int
    _: dataclasses.KW_ONLY
    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if not 0 <= self.worker < self.num_workers:
            raise ValueError(f"worker {self.worker} is not in [0, num_workers={self.num_workers})")

    def builds(self, batch: int) -> bool:
        """Whether this data-loader worker builds its rank's batch number `batch`."""
        return batch % self.num_workers == self.worker


@dataclasses.dataclass(frozen=True)
class Deal:
    """The round-robin deal of row groups to ranks: `base[s]`, `units[s]` per source."""

    base: np.ndarray  # int64 [S]
    units: np.ndarray  # int64 [S]

    @staticmethod
    def of(sources: Sequence[Source]) -> Deal:
        units = np.asarray([len(s.units) for s in sources], dtype=np.int64)
        return Deal(np.r_[0, np.cumsum(units)[:-1]].astype(np.int64), units)

    def owner(self, source: int, epoch: int, places: np.ndarray, world_size: int) -> np.ndarray:
        """The rank of each unit place of (source, epoch), at this world size."""
        # Python ints first: base + epoch * units can pass 2**63 only after ~1e18 epochs.
        start = (int(self.base[source]) + epoch * int(self.units[source])) % world_size
        return (start + np.asarray(places, dtype=np.int64)) % world_size
