"""Per-source, per-epoch read order: shuffled row groups, rows shuffled within bounded windows.

For source s and epoch e: the row groups are permuted by `key_of(seed, "units", s, e)`;
walking them in that order, a new window starts at the first row group that begins at or
past each multiple of `buffer` rows, so a window holds fewer than `buffer` + (largest row
group) rows; rows are permuted within each window by `key_of(seed, "rows", s, e, window)`.
This is a bounded-buffer shuffle whose order is computable from the index alone, so any
rank can map "row k of source s in epoch e" to (row group, row) without reading data.

Invariant: for each (s, e), `locate` is a bijection from cursors [0, rows) to the rows.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from reader.index import Source
from reader.keyed_hash import key_of, keyed_permutation

_WINDOW_CACHE = 4  # window permutations kept per plan (a batch touches one or two)


class EpochPlan:
    """The read order of one source in one epoch."""

    def __init__(self, source: Source, *, unit_rows: np.ndarray, seed: int, epoch: int, buffer: int) -> None:
        if buffer < 1:
            raise ValueError(f"shuffle buffer must be >= 1 row, got {buffer}")
        self.source = source
        self.epoch = epoch
        self._seed = seed
        perm = keyed_permutation(key_of(seed, "units", source.dataset, source.task, epoch), len(source.units))
        self.units = source.units[perm]  # global unit ids, in read order
        rows = unit_rows[self.units]
        self.unit_start = np.r_[0, np.cumsum(rows)[:-1]].astype(np.int64)
        window_of_unit = self.unit_start // buffer
        first = np.r_[True, window_of_unit[1:] != window_of_unit[:-1]]
        self.window_start = np.r_[self.unit_start[first], source.rows].astype(np.int64)
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def num_windows(self) -> int:
        return len(self.window_start) - 1

    def _window_perm(self, w: int) -> np.ndarray:
        perm = self._perms.get(w)
        if perm is None:
            size = int(self.window_start[w + 1] - self.window_start[w])
            key = key_of(self._seed, "rows", self.source.dataset, self.source.task, self.epoch, w)
            perm = keyed_permutation(key, size)
            self._perms[w] = perm
            if len(self._perms) > _WINDOW_CACHE:
                self._perms.popitem(last=False)
        return perm

    def locate(self, cursors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(global unit id, row within that unit, window) of each cursor in [0, rows)."""
        j, within, window = self.positions(cursors)
        return self.units[j], within, window

    def positions(self, cursors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(place of the unit in this epoch's unit order, row within the unit, window) per cursor."""
        cursors = np.asarray(cursors, dtype=np.int64)
        window = np.searchsorted(self.window_start, cursors, side="right") - 1
        position = np.empty_like(cursors)
        for w in np.unique(window):
            sel = window == w
            start = self.window_start[w]
            position[sel] = start + self._window_perm(int(w))[cursors[sel] - start]
        j = np.searchsorted(self.unit_start, position, side="right") - 1
        return j, position - self.unit_start[j], window


class PlanCache:
    """The `EpochPlan`s in use, per (source, epoch). A source's cursor only moves forward,
    so asking for epoch e of a source drops its plans of earlier epochs."""

    def __init__(self, sources: tuple[Source, ...], *, unit_rows: np.ndarray, seed: int, buffer: int) -> None:
        self._sources = sources
        self._unit_rows = unit_rows
        self._seed = seed
        self._buffer = buffer
        self._plans: dict[tuple[int, int], EpochPlan] = {}

    def get(self, source: int, epoch: int) -> EpochPlan:
        plan = self._plans.get((source, epoch))
        if plan is None:
            for key in [k for k in self._plans if k[0] == source and k[1] < epoch]:
                del self._plans[key]
            plan = EpochPlan(
                self._sources[source], unit_rows=self._unit_rows, seed=self._seed, epoch=epoch, buffer=self._buffer
            )
            self._plans[(source, epoch)] = plan
        return plan
