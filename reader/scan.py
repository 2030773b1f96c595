"""Walk the global stream from a saved point and hand one rank its batches.

Every rank walks the whole global stream (mixture draws and unit places only, no data),
deals each sample to the rank that owns its row group (`reader.sharding.Deal`), skips the
samples a saved tail marks as consumed (`reader.state.Tail`), and keeps every rank's
queue of samples. Rank batch n is taken only once every rank can fill its batch n, so in
a finite stream all ranks yield the same number of batches. After batch n the frontier is
the smallest end among the ranks; the new tail is this world's ends, plus the older
layers that still reach past the frontier.

Invariant: over any sequence of saves and resumes (any world sizes, any batch sizes) the
samples consumed are each global sample once, and each rank's are in global order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from reader.mixture import Draws, Mixture, MixtureState
from reader.sharding import Deal
from reader.shuffle import PlanCache
from reader.state import Tail

_MIN_BLOCK = 1024  # global samples dealt per step of the walk


@dataclasses.dataclass(frozen=True)
class Resume:
    """Where a stream continues: the draw state at the frontier, and the consumed tail."""

    mixture: MixtureState
    tail: tuple[Tail, ...] = ()


@dataclasses.dataclass(frozen=True)
class RankBatch:
    """Rank batch `number` (counted from the resume point): its draws and global indices,
    and the resume point once every rank consumed its batches up to this one."""

    number: int
    draws: Draws
    global_index: np.ndarray
    after: Resume


class _Queue:
    """One rank's dealt samples not yet in a batch: global index, and the draw (own rank only)."""

    def __init__(self, keep_draws: bool) -> None:
        self.keep_draws = keep_draws
        self.index = np.zeros(0, dtype=np.int64)
        self.draws = Draws(self.index, self.index, self.index)

    def push(self, index: np.ndarray, draws: Draws, sel: np.ndarray) -> None:
        self.index = np.concatenate([self.index, index[sel]])
        if self.keep_draws:
            old = self.draws
            self.draws = Draws(
                np.concatenate([old.source, draws.source[sel]]),
                np.concatenate([old.epoch, draws.epoch[sel]]),
                np.concatenate([old.cursor, draws.cursor[sel]]),
            )

    def pop(self, n: int) -> tuple[np.ndarray, Draws]:
        index, self.index = self.index[:n], self.index[n:]
        d = self.draws
        head = Draws(d.source[:n], d.epoch[:n], d.cursor[:n])
        self.draws = Draws(d.source[n:], d.epoch[n:], d.cursor[n:])
        return index, head


class Walk:
    """The global stream from `start`, dealt over `world_size` ranks."""

    def __init__(self, mixture: Mixture, plans: PlanCache, deal: Deal, *, world_size: int, start: Resume) -> None:
        self._mixture = mixture
        self._plans = plans
        self._deal = deal
        self._world = world_size
        self._tail = start.tail
        self._scan = start.mixture.copy()  # where dealing has reached
        self._frontier = start.mixture.copy()  # where every rank has consumed up to

    def _owners(self, draws: Draws, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Owner rank of each draw at this world size, and whether a tail marks it consumed."""
        owner = np.empty(len(draws), dtype=np.int64)
        consumed = np.zeros(len(draws), dtype=bool)
        for source in np.unique(draws.source):
            of_source = draws.source == source
            for epoch in np.unique(draws.epoch[of_source]):
                sel = of_source & (draws.epoch == epoch)
                s, e = int(source), int(epoch)
                places = self._plans.get(s, e).positions(draws.cursor[sel])[0]
                owner[sel] = self._deal.owner(s, e, places, self._world)
                for layer in self._tail:
                    ends = np.asarray(layer.ends, dtype=np.int64)
                    consumed[sel] |= index[sel] < ends[self._deal.owner(s, e, places, layer.world_size)]
        return owner, consumed

    def _deal_more(self, queues: list[_Queue], block: int) -> bool:
        """Deal the next `block` samples to the queues; False once the stream has ended."""
        first = self._scan.position
        draws = self._mixture.take(self._scan, block)
        if not len(draws):
            return False
        index = np.arange(first, first + len(draws), dtype=np.int64)
        owner, consumed = self._owners(draws, index)
        for r, queue in enumerate(queues):
            queue.push(index, draws, (owner == r) & ~consumed)
        return True

    def batches(self, batch_size: int, *, rank: int) -> Iterator[RankBatch]:
        """Rank `rank`'s batches, forever or until the stream ends for some rank."""
        queues = [_Queue(keep_draws=r == rank) for r in range(self._world)]
        block = max(_MIN_BLOCK, 2 * self._world * batch_size)
        number = 0
        while True:
            while min(len(q.index) for q in queues) < batch_size:
                if not self._deal_more(queues, block):
                    return  # some rank cannot fill this batch: every rank stops here
            ends = tuple(int(q.index[batch_size - 1]) + 1 for q in queues)
            index, draws = queues[rank].pop(batch_size)
            for r, q in enumerate(queues):
                if r != rank:
                    q.pop(batch_size)
            frontier = min(ends)
            self._mixture.skip(self._frontier, frontier - self._frontier.position)
            self._tail = tuple(t for t in self._tail if max(t.ends) > frontier)
            layers = (Tail(self._world, ends),) if max(ends) > frontier else ()
            yield RankBatch(number, draws, index, Resume(self._frontier.copy(), layers + self._tail))
            number += 1
