"""The expert-return filter's arithmetic (spec section 4): a threshold per task, then keep or drop.

Per task, with N episodes in collection order and returns R_1..R_N:
    W = max(1, min(cap, floor(0.1 * N)))            (cap = 1000 by default)
    E = max over j of mean(R_j .. R_{j+W-1})         (the expert return)
    keep an episode when R >= E - (1 - fraction) * |E|   (fraction = 0.8 by default)

- `window_size`, `slack` (1 - fraction in decimal, so that 0.8 gives exactly 0.2) and
  `threshold_for` are the formulas.
- `expert_return`: W, E and the threshold of one task's finite returns in linear time.
  `window_sums` adds block suffixes and prefixes, never subtracting two large prefix
  sums; near-best windows are settled with exact sums (math.fsum); the first best wins.
- `TaskReturns`: one task's (sort key, return) pairs as compact columns, about 40 bytes
  per episode when order keys are integers (`OrderKeys`): all the filter ever holds per
  task. Its collection order refuses a repeated sort key (an episode read twice) and
  order keys that do not compare.
- `decide`: one episode's `FilterDecision`. Non-finite returns never get here: they are
  rejects (`transforms/verdict.py`, `non_finite_return`), in both passes.

Bad input is a ValueError naming the task (and the episode and file where there is one).
The Beam stages are in `pipeline/filter_episodes.py` (`ExpertThresholds`, `FilterEpisodes`).
"""

from __future__ import annotations

import array
import dataclasses
import decimal
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from schemas.output import (
    FILTER_AT_OR_ABOVE_THRESHOLD,
    FILTER_BELOW_THRESHOLD,
    FILTER_NO_FILTER,
)
from transforms.episode import EpisodeKey, FilterDecision, TaskKey
from transforms.verdict import check_return

DEFAULT_FRACTION = 0.8
DEFAULT_CAP = 1000
_MAX_EXACT_CANDIDATES = 64


def window_size(n: int, *, cap: int = DEFAULT_CAP) -> int:
    """W = max(1, min(cap, floor(0.1 * n))); floor(0.1 n) is computed exactly as n // 10."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"window_size needs a positive episode count, got {n!r}")
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1:
        raise ValueError(f"the window cap must be a positive integer, got {cap!r}")
    return max(1, min(int(cap), int(n) // 10))


def slack(fraction: float) -> float:
    """1 - fraction, computed in decimal so that fraction 0.8 gives exactly the spec's 0.2.

    (In binary floating point 1 - 0.8 is 0.19999999999999996, which would move the
    threshold by one ulp away from the spec's `E - 0.2 * |E|`.)
    """
    if not isinstance(fraction, (int, float)) or not math.isfinite(fraction) or not 0 <= fraction <= 1:
        raise ValueError(f"the filter fraction must be a number in [0, 1], got {fraction!r}")
    return float(decimal.Decimal(1) - decimal.Decimal(repr(float(fraction))))


def threshold_for(expert: float, *, fraction: float = DEFAULT_FRACTION) -> float:
    """The keep threshold E - (1 - fraction) * |E| (a relaxation also for negative E)."""
    return float(expert - slack(fraction) * abs(expert))


@dataclasses.dataclass(frozen=True)
class TaskThreshold:
    """The filter's parameters for one task.

    Invariants: 1 <= window <= min(cap, n); 0 <= window_start <= n - window;
    threshold <= expert_return; `expert_return` is the correctly rounded sum (math.fsum)
    of the window starting at `window_start`, divided by W (the first window, in collection order, with the
    largest mean).
    """

    n: int  # episodes with a return (valid episodes), the N of the window rule
    window: int  # W
    expert_return: float  # E
    threshold: float  # E - (1 - fraction) * |E|
    window_start: int  # 0-based index, in collection order, of the first episode of E's window
    fraction: float
    cap: int

    def keeps(self, value: float) -> bool:
        """The keep rule: R >= threshold."""
        return bool(value >= self.threshold)


def window_sums(values: np.ndarray, window: int) -> np.ndarray:
    """Sums of every window of `window` consecutive values, in linear time.

    Block decomposition instead of global prefix sums: the array is cut into blocks
    of `window` values; a window is a suffix of one block plus a prefix of the next,
    and both come from cumulative sums *within* a block. So each sum adds at most
    2W terms, like a direct sum, and never subtracts two large prefix sums (which
    for 1e6 returns would cancel most significant digits).
    """
    n = values.shape[0]
    count = n - window + 1
    blocks = -(-n // window)
    padded = np.zeros(blocks * window + window, dtype=np.float64)
    padded[:n] = values
    grid = padded.reshape(-1, window)
    prefix = np.cumsum(grid, axis=1)  # prefix[b, i] = sum of block b's items 0..i
    suffix = np.cumsum(grid[:, ::-1], axis=1)[:, ::-1]  # suffix[b, i] = items i..W-1
    starts = np.arange(count)
    block, offset = np.divmod(starts, window)
    head = suffix[block, offset]
    # The window's tail in the next block: items 0..offset-1 (none when offset == 0).
    tail = np.where(offset > 0, prefix[block + 1, np.maximum(offset - 1, 0)], 0.0)
    return head + tail


def expert_return(
    returns_in_collection_order: Sequence[float] | np.ndarray,
    *,
    fraction: float = DEFAULT_FRACTION,
    cap: int = DEFAULT_CAP,
) -> TaskThreshold:
    """W, E and the threshold of one task from its returns in collection order (linear time)."""
    values = np.asarray(returns_in_collection_order, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(
            f"expert_return needs a non-empty 1-D series of returns, got shape {values.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(
            f"episode return at collection index {int(bad[0])} is {values[bad[0]]!r}; "
            "returns must be finite (such an episode should have been rejected)"
        )
    n = int(values.shape[0])
    w = window_size(n, cap=cap)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        sums = window_sums(values, w)
    if not np.all(np.isfinite(sums)):
        raise ValueError(
            f"episode returns up to {float(np.max(np.abs(values)))!r} overflow a window sum of {w} "
            "returns; such returns are not meaningful rewards (check the dataset's reward field)"
        )
    # The fast sums may differ from exact ones by rounding (at most about 2W * eps * W * max|R|):
    # every window within that margin of the maximum is a candidate; exact sums (fsum) settle
    # them and the first best wins. Only the first 64 candidates are settled exactly, so with
    # many near-equal windows (e.g. constant returns) E is still exact to that margin.
    scale = float(np.max(np.abs(values)))
    margin = 2.0 * w * w * np.finfo(np.float64).eps * scale
    candidates = np.flatnonzero(sums >= sums.max() - margin)
    best_start, best_sum = -1, -math.inf
    for start in candidates[:_MAX_EXACT_CANDIDATES].tolist():
        exact = math.fsum(values[start : start + w].tolist())
        if exact > best_sum:
            best_start, best_sum = start, exact
    expert = best_sum / w
    return TaskThreshold(
        n=n,
        window=w,
        expert_return=float(expert),
        threshold=threshold_for(expert, fraction=fraction),
        window_start=int(best_start),
        fraction=float(fraction),
        cap=int(cap),
    )


def collection_order(task: TaskKey, sort_keys: Sequence[tuple[Any, ...]]) -> np.ndarray:
    """Indices that put one task's episodes in collection order (a stable, total order).

    A repeated sort key (same order key, file and record) is the same episode read twice:
    a ValueError, never a silent tie.
    """
    try:
        order = sorted(range(len(sort_keys)), key=sort_keys.__getitem__)
    except TypeError as error:
        raise ValueError(
            f"task {task}: order keys are not comparable with each other ({error}); "
            "the registry's order key must have the same types for every episode"
        ) from error
    for earlier, later in zip(order, order[1:]):
        if sort_keys[earlier] == sort_keys[later]:
            raise ValueError(
                f"task {task}: two episodes share the sort key {sort_keys[later]!r} "
                "(same order key, file and record): the episode was read twice"
            )
    return np.asarray(order, dtype=np.int64)


def _int64(value: Any) -> bool:
    return type(value) is int and -(2**63) <= value < 2**63  # bool and numpy scalars: as tuples


class OrderKeys:
    """One task's order keys: int64 columns while every key is a tuple of Python ints of
    one length (the registry's ids: 8 bytes a position), else the tuples as they are.

    Either way they sort exactly as Python compares the tuples; a key that fits no
    column turns the columns back into tuples, so mixed types still fail to compare.
    """

    def __init__(self) -> None:
        self.count = 0
        self.columns: list[array.array] | None = None  # one "q" array a position; None before the first key
        self.tuples: list[tuple[Any, ...]] | None = None  # instead of the columns, once a key does not fit

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        if self.tuples is not None:
            return self.tuples[index]
        return tuple(column[index] for column in self.columns or ())

    def _fits(self, key: tuple[Any, ...]) -> bool:
        if self.tuples is not None or not isinstance(key, tuple) or not all(map(_int64, key)):
            return False
        return self.columns is None or len(key) == len(self.columns)

    def _as_tuples(self) -> list[tuple[Any, ...]]:
        if self.tuples is None:
            columns = [column.tolist() for column in self.columns or ()]
            self.tuples = list(zip(*columns)) if columns else [()] * self.count
            self.columns = None
        return self.tuples

    def append(self, key: tuple[Any, ...]) -> None:
        if self._fits(key):
            if self.columns is None:
                self.columns = [array.array("q") for _ in key]
            for column, part in zip(self.columns, key):
                column.append(part)
        else:
            self._as_tuples().append(tuple(key))
        self.count += 1

    def extend(self, other: OrderKeys) -> None:
        theirs = other.int_columns()
        if not other.count:
            return
        if theirs is not None and self.tuples is None and (self.columns is None or len(self.columns) == len(theirs)):
            if self.columns is None:
                self.columns = [array.array("q") for _ in theirs]
            for column, more in zip(self.columns, other.columns or ()):
                column.extend(more)
        else:
            self._as_tuples().extend(other[i] for i in range(other.count))
        self.count += other.count

    def int_columns(self) -> list[np.ndarray] | None:
        """The keys as int64 columns (first position first), or None when kept as tuples."""
        if self.tuples is not None:
            return None
        return [np.frombuffer(column, np.int64) for column in self.columns or ()]


class TaskReturns:
    """One task's (sort key, return) pairs as compact columns: about 40 bytes per episode
    with integer order keys.

    The order keys are `OrderKeys` (the registry decides their types); file names are
    stored once each and referenced by index, record indices and returns live in typed
    arrays. This is all the filter ever holds per task.
    """

    def __init__(self) -> None:
        self.order_keys = OrderKeys()
        self.files: list[str] = []
        self.file_ids: dict[str, int] = {}
        self.file_index = array.array("q")
        self.records = array.array("q")
        self.values = array.array("d")

    def __len__(self) -> int:
        return len(self.values)

    def _file_id(self, source_file: str) -> int:
        file_id = self.file_ids.get(source_file)
        if file_id is None:
            file_id = self.file_ids[source_file] = len(self.files)
            self.files.append(source_file)
        return file_id

    def add(self, sort_key: tuple[Any, ...], value: float) -> None:
        order_key, source_file, record = sort_key
        self.order_keys.append(order_key)
        self.file_index.append(self._file_id(source_file))
        self.records.append(record)
        self.values.append(value)

    def merge(self, other: TaskReturns) -> None:
        remap = np.asarray([self._file_id(f) for f in other.files], dtype=np.int64)
        self.order_keys.extend(other.order_keys)
        if len(other):
            self.file_index.extend(remap[np.asarray(other.file_index, dtype=np.int64)].tolist())
        self.records.extend(other.records)
        self.values.extend(other.values)

    def collection_order(self, task: TaskKey) -> np.ndarray:
        """Indices in collection order: order key, then file, then record (see `collection_order`)."""
        file_rank = np.empty(len(self.files), dtype=np.int64)
        file_rank[np.argsort(np.asarray(self.files, dtype=object), kind="stable")] = np.arange(len(self.files))
        files = file_rank[np.asarray(self.file_index, dtype=np.int64)]
        records = np.asarray(self.records, dtype=np.int64)
        columns = self.order_keys.int_columns()
        if columns is not None:
            # lexsort's last key is the primary one: order key positions, then file, then record.
            return self._checked(task, np.lexsort((records, files, *reversed(columns))), files, records)
        by_file_and_record = np.lexsort((records, files))
        try:
            # Python's sort is stable: sorting the (file, record) order by order key gives
            # the total order without building a tuple per episode.
            order = np.asarray(
                sorted(by_file_and_record.tolist(), key=self.order_keys.__getitem__), dtype=np.int64
            )
        except TypeError as error:
            raise ValueError(
                f"task {task}: order keys are not comparable with each other ({error}); "
                "the registry's order key must have the same types for every episode"
            ) from error
        return self._checked(task, order, files, records)

    def _checked(self, task: TaskKey, order: np.ndarray, files: np.ndarray, records: np.ndarray) -> np.ndarray:
        """`order`, once no two episodes in it share a sort key (they would be neighbours)."""
        same_place = np.flatnonzero((files[order[1:]] == files[order[:-1]]) & (records[order[1:]] == records[order[:-1]]))
        for i in same_place.tolist():
            if self.order_keys[order[i]] == self.order_keys[order[i + 1]]:
                j = int(order[i + 1])
                raise ValueError(
                    f"task {task}: two episodes share the sort key "
                    f"{(self.order_keys[j], self.files[self.file_index[j]], self.records[j])!r} "
                    "(same order key, file and record): the episode was read twice"
                )
        return order

    def threshold(self, task: TaskKey, *, fraction: float, cap: int) -> TaskThreshold:
        values = np.asarray(self.values, dtype=np.float64)[self.collection_order(task)]
        return expert_return(values, fraction=fraction, cap=cap)


def thresholds_from_pairs(
    task: TaskKey,
    pairs: Iterable[tuple[tuple[Any, ...], float]],
    *,
    fraction: float = DEFAULT_FRACTION,
    cap: int = DEFAULT_CAP,
) -> TaskThreshold:
    """Sort one task's (sort_key, return) pairs into collection order and compute its threshold."""
    returns = TaskReturns()
    for sort_key, value in pairs:
        returns.add(sort_key, value)
    return returns.threshold(task, fraction=fraction, cap=cap)


def decide(
    key: EpisodeKey, value: float, threshold: TaskThreshold | None, *, no_filter: bool
) -> FilterDecision:
    """The filter's verdict on one episode (pure; the DoFn only adds counters). A non-finite
    return raises `transforms.verdict.NonFiniteReturn`, which the Filter stage checks first."""
    if no_filter:
        return FilterDecision(key=key, value=float(value), kept=True, reason=FILTER_NO_FILTER)
    if threshold is None:
        raise ValueError(
            f"no expert-return threshold for task {key.task_key} (episode {key.episode_id!r}, "
            f"file {key.source_file!r}): pass 1 saw no valid episode of this task"
        )
    value = check_return(key, value)  # a NonFiniteReturn (reason code), never a bare crash
    kept = threshold.keeps(value)
    return FilterDecision(
        key=key,
        value=float(value),
        kept=kept,
        reason=FILTER_AT_OR_ABOVE_THRESHOLD if kept else FILTER_BELOW_THRESHOLD,
    )
