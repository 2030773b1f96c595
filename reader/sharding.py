"""Which global samples one consumer (rank, data-loader worker) reads.

The global stream is cut into global steps of `world_size * batch_size` samples, starting
at the resume position. In step s, rank r takes samples [r * B, (r + 1) * B) of the step,
and within a rank, data-loader worker s % num_workers builds that batch (the order in
which a PyTorch DataLoader collects batches from its workers). So after every rank has
consumed n batches, exactly the first n * world_size * B samples after the resume position
were consumed, whatever the world size: that number is the state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator


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

    @property
    def step_size(self) -> int:
        """Samples per global step (all ranks)."""
        return self.world_size * self.batch_size

    def steps(self, start: int) -> Iterator[tuple[int, int, int]]:
        """(step start, batch start, batch end) of this consumer's batches, forever."""
        step = self.worker
        while True:
            step_start = start + step * self.step_size
            lo = step_start + self.rank * self.batch_size
            yield step_start, lo, lo + self.batch_size
            step += self.num_workers

    def position_after(self, start: int, batches: int) -> int:
        """Global position once every rank has consumed `batches` batches from `start`."""
        return start + batches * self.step_size
