"""Per-task books and the stats record (spec section 4). Pure numpy, no Beam.

`check_books` orders and checks what the job knows about one task (threshold, returns,
filter decisions, kept and tokenized episodes, rejects, summed sequencing counts) into
`TaskBooks`: read = kept + dropped + rejected; a kept episode is tokenized or rejected,
never lost; a tokenized episode a later stage (sequencing) rejects counts as rejected;
the copies of a duplicate id are counted one by one; with sequencing counts, every kept
episode was sequenced exactly once. `summarize_books`
turns the books into the stats record, `formats.stats_files.episodes_table` into the
per-episode audit table. The row types are the compact per-episode tuples the Beam stage
groups per task (plain tuples in the same field order work too).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from schemas import output as out
from transforms.episode import TaskKey
from transforms.expert_filter import (
    DEFAULT_CAP,
    DEFAULT_FRACTION,
    TaskThreshold,
    collection_order,
    window_sums,
)
from transforms.sequence import SequenceBatch
from transforms.verdict import DUPLICATE_EPISODE_ID


@dataclasses.dataclass(frozen=True)
class SequenceCounts:
    """Sequencing figures of one episode, or summed over a task (for the statistics).

    `prompts_unavailable` counts rows that drew a prompt while no other eligible episode
    existed: for a one-episode task it is about `prompt_fraction * sequences`.
    """

    episodes: int = 0
    sequences: int = 0
    prompted: int = 0
    unprompted: int = 0
    prompts_unavailable: int = 0
    tokens: int = 0  # before padding, prompts included

    @classmethod
    def of(cls, batch: SequenceBatch) -> SequenceCounts:
        return cls(1, batch.num_sequences, batch.num_prompted, batch.num_unprompted,
                   batch.prompts_unavailable, batch.total_tokens)

    def __add__(self, other: SequenceCounts) -> SequenceCounts:
        return SequenceCounts(*(getattr(self, f.name) + getattr(other, f.name)
                                for f in dataclasses.fields(self)))


HISTOGRAM_BINS = 20
MAX_CURVE_POINTS = 500


class ReturnRow(NamedTuple):
    """The pass-1 return of one valid episode."""

    sort_key: tuple[Any, ...]  # `EpisodeKey.sort_key()`: defines the collection order
    episode_id: str
    value: float  # the episode's return
    source_file: str


class DecisionRow(NamedTuple):
    """The filter's verdict on one episode."""

    episode_id: str
    kept: bool
    reason: str


class KeptRow(NamedTuple):
    """One episode kept by the filter and tokenized."""

    episode_id: str
    value: float  # the episode's return
    timesteps: int
    tokens: int


class RejectRow(NamedTuple):
    """One rejected episode, from any stage."""

    episode_id: str | None  # None: an unreadable record, no episode id
    source_file: str
    reason: str
    field: str | None
    detail: str


@dataclasses.dataclass(frozen=True)
class StatsOptions:
    """How the statistics are computed; fraction/cap/no_filter mirror the filter's flags."""

    fraction: float = DEFAULT_FRACTION
    cap: int = DEFAULT_CAP
    no_filter: bool = False
    bins: int = HISTOGRAM_BINS
    max_curve_points: int = MAX_CURVE_POINTS


@dataclasses.dataclass(frozen=True, eq=False)
class TaskBooks:
    """The checked books of one task (`check_books`).

    Invariants: `returns` is in collection order and `values[i] == returns[i].value`;
    every episode with a return is in `decided` or `rejected_ids`, and every decided one
    has a return; `tokenized` holds only episodes the filter kept and none of
    `rejected_ids`; no rejected episode was dropped; `reject_rows` has one row per
    rejected episode (plus one per unreadable record); `sequences.episodes == kept` when
    the job sequenced (all zeros when it did not).
    """

    task: TaskKey
    threshold: TaskThreshold | None
    returns: tuple[ReturnRow, ...]
    values: np.ndarray  # float64, one per return
    decided: Mapping[str, DecisionRow]
    tokenized: Mapping[str, KeptRow]
    rejected_ids: Mapping[str, RejectRow]
    reject_rows: tuple[RejectRow, ...]
    sequences: SequenceCounts

    @property
    def counts(self) -> tuple[int, int, int]:
        """(kept, dropped, rejected); their sum is the episodes read."""
        dropped = sum(1 for row in self.decided.values() if not row.kept)
        return len(self.tokenized), dropped, len(self.reject_rows)


def _summary(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """(min, median, max), all None for an empty set."""
    if values.size == 0:
        return None, None, None
    return float(values.min()), float(np.median(values)), float(values.max())


def histogram_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """`bins` equal bins over [min, max] of `values` (a unit-wide range around a single value)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def downsample_curve(curve: np.ndarray, max_points: int, must_include: int) -> np.ndarray:
    """At most `max_points` (+1 for `must_include`) evenly spaced indices into `curve`, sorted."""
    if curve.size <= max_points:
        return np.arange(curve.size, dtype=np.int64)
    picks = np.round(np.linspace(0, curve.size - 1, max_points)).astype(np.int64)
    return np.unique(np.append(picks, must_include))


def _dedupe_rejects(rejects: Iterable[RejectRow]) -> list[RejectRow]:
    """One row per rejected episode: the same episode rejected identically twice counts
    once; the same episode rejected for two different reasons is kept once with its first
    reason in sorted order, so the count stays one per episode. The copies of a duplicate
    id are distinct episodes, even in one file: each counts (their details differ)."""
    by_episode: dict[tuple[str | None, ...], RejectRow] = {}
    unnamed: list[RejectRow] = []
    rows = {RejectRow._make(row) for row in rejects}
    for row in sorted(rows, key=lambda r: tuple("" if x is None else str(x) for x in r)):
        if row.episode_id is None:
            unnamed.append(row)  # an unreadable record: no id to deduplicate on
        elif row.reason == DUPLICATE_EPISODE_ID:
            by_episode.setdefault((row.episode_id, row.source_file, row.detail), row)
        else:
            by_episode.setdefault((row.episode_id, row.source_file), row)
    return list(by_episode.values()) + unnamed


def _ordered_returns(
    task: TaskKey, *, returns: Iterable[ReturnRow], threshold: TaskThreshold | None
) -> tuple[ReturnRow, ...]:
    """The returns in collection order; one per episode, as many as the threshold saw."""
    rows = [ReturnRow._make(row) for row in returns]
    order = collection_order(task, [row.sort_key for row in rows])
    ordered = tuple(rows[i] for i in order)
    ids = [row.episode_id for row in ordered]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, c in collections.Counter(ids).items() if c > 1)
        raise ValueError(f"task {task}: episode id {duplicate!r} has two returns (read twice?)")
    if threshold is not None and threshold.n != len(ordered):
        raise ValueError(f"task {task}: the threshold was computed over {threshold.n} episodes but "
                         f"{len(ordered)} returns reached the statistics")
    if threshold is None and ordered:
        raise ValueError(f"task {task}: {len(ordered)} valid episodes but no threshold")
    return ordered


def _decided(task: TaskKey, *, decisions: Iterable[DecisionRow]) -> dict[str, DecisionRow]:
    """The filter's decisions by episode id; an episode filtered twice is an error."""
    decided: dict[str, DecisionRow] = {}
    for row in map(DecisionRow._make, decisions):
        if row.episode_id in decided:
            raise ValueError(f"task {task}: episode {row.episode_id!r} was filtered twice")
        decided[row.episode_id] = row
    return decided


def _tokenized(
    task: TaskKey, *, kept: Iterable[KeptRow], decided: Mapping[str, DecisionRow]
) -> dict[str, KeptRow]:
    """The tokenized episodes by id; each tokenized once, and only if the filter kept it."""
    tokenized: dict[str, KeptRow] = {}
    for row in map(KeptRow._make, kept):
        if row.episode_id in tokenized:
            raise ValueError(f"task {task}: episode {row.episode_id!r} was tokenized twice")
        decision = decided.get(row.episode_id)
        if decision is None or not decision.kept:
            raise ValueError(f"task {task}: episode {row.episode_id!r} was tokenized but not kept by the filter")
        tokenized[row.episode_id] = row
    return tokenized


def _check_balance(
    task: TaskKey,
    *,
    returns: tuple[ReturnRow, ...],
    decided: Mapping[str, DecisionRow],
    tokenized: Mapping[str, KeptRow],
    rejected_ids: Mapping[str, RejectRow],
) -> None:
    """Every episode is counted exactly once: dropped, kept (tokenized) or rejected."""
    # Membership tests instead of set algebra: no copy of a million-episode id set.
    both = sorted(e for e in rejected_ids if e in decided and not decided[e].kept)
    if both:
        raise ValueError(f"task {task}: episode {both[0]!r} is counted both as rejected and as dropped")
    lost = sorted(
        episode_id
        for episode_id, row in decided.items()
        if row.kept and episode_id not in tokenized and episode_id not in rejected_ids
    )
    if lost:
        raise ValueError(
            f"task {task}: {len(lost)} episode(s) kept by the filter were neither tokenized nor "
            f"rejected, e.g. {lost[0]!r}"
        )
    id_set = {row.episode_id for row in returns}
    unknown = sorted(e for e in decided if e not in id_set)
    if unknown:
        raise ValueError(f"task {task}: episode {unknown[0]!r} was filtered but has no pass-1 return")
    missing = sorted(e for e in (row.episode_id for row in returns) if e not in decided and e not in rejected_ids)
    if missing:
        raise ValueError(
            f"task {task}: {len(missing)} valid episode(s) never reached the filter nor a reject, "
            f"e.g. {missing[0]!r}"
        )


def _check_sequence_counts(task: TaskKey, *, counts: SequenceCounts, n_kept: int) -> None:
    """Every kept episode (tokenized, not rejected) is sequenced exactly once, and every
    row is either prompted or not."""
    if counts.episodes != n_kept:
        raise ValueError(f"task {task}: sequencing counted {counts.episodes} episode(s) but {n_kept} were kept "
                         "(an episode sequenced twice, or kept but never sequenced)")
    if counts.prompted + counts.unprompted != counts.sequences:
        raise ValueError(f"task {task}: {counts.prompted} prompted + {counts.unprompted} unprompted rows "
                         f"!= {counts.sequences} sequences")
    if not 0 <= counts.prompts_unavailable <= counts.unprompted:
        raise ValueError(f"task {task}: {counts.prompts_unavailable} rows without an available prompt but only "
                         f"{counts.unprompted} unprompted rows")


def check_books(
    task: TaskKey,
    *,
    threshold: TaskThreshold | None,
    returns: Iterable[ReturnRow],
    decisions: Iterable[DecisionRow],
    kept: Iterable[KeptRow],
    rejects: Iterable[RejectRow],
    sequences: SequenceCounts | None = None,
) -> TaskBooks:
    """The task's books, ordered and checked (`TaskBooks` invariants); `sequences` is the
    task's summed sequencing counts (None: not sequenced).

    Raises ValueError naming task and episode when the books do not balance (an episode
    lost between stages, counted twice, kept and rejected at once, or sequenced a different
    number of times than kept): trainers must trust that exactly the counted episodes went in.
    """
    ordered = _ordered_returns(task, returns=returns, threshold=threshold)
    values = np.fromiter((row.value for row in ordered), dtype=np.float64, count=len(ordered))
    decided = _decided(task, decisions=decisions)
    tokenized = _tokenized(task, kept=kept, decided=decided)
    reject_rows = tuple(_dedupe_rejects(rejects))
    rejected_ids = {row.episode_id: row for row in reject_rows if row.episode_id is not None}
    # A stage after tokenization (sequencing) may still reject a tokenized episode: it never
    # reaches the output, so it counts as rejected, not kept.
    for episode_id in [e for e in tokenized if e in rejected_ids]:
        del tokenized[episode_id]
    _check_balance(task, returns=ordered, decided=decided, tokenized=tokenized, rejected_ids=rejected_ids)
    if sequences is not None:
        _check_sequence_counts(task, counts=sequences, n_kept=len(tokenized))
    return TaskBooks(
        task=task, threshold=threshold, returns=ordered, values=values, decided=decided, tokenized=tokenized,
        rejected_ids=rejected_ids, reject_rows=reject_rows,
        sequences=sequences if sequences is not None else SequenceCounts(),
    )


def _windowed_mean(books: TaskBooks, *, options: StatsOptions) -> tuple[np.ndarray, np.ndarray]:
    """The windowed mean return over collection order and the indices reported of it."""
    threshold = books.threshold
    if threshold is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    curve = window_sums(books.values, threshold.window) / threshold.window
    return curve, downsample_curve(curve, options.max_curve_points, threshold.window_start)


def summarize_books(books: TaskBooks, *, options: StatsOptions = StatsOptions()) -> dict[str, Any]:
    """The stats record of checked books (keys `schemas.output.ST_*`, in the files' order).

    Empty statistics are None (never NaN); without a threshold, fraction and cap are the
    options' (what the filter would have used).
    """
    dataset, task_name = books.task
    threshold, values, tokenized, sequenced = books.threshold, books.values, books.tokenized, books.sequences
    n_kept, n_dropped, n_rejected = books.counts
    by_reason = collections.Counter(row.reason for row in books.reject_rows)
    kept_values = np.fromiter((row.value for row in tokenized.values()), dtype=np.float64, count=n_kept)
    all_min, all_median, all_max = _summary(values)
    kept_min, kept_median, kept_max = _summary(kept_values)
    edges = histogram_edges(values, options.bins)
    hist_all = np.histogram(values, edges)[0] if edges.size else np.zeros(0, np.int64)
    hist_kept = np.histogram(kept_values, edges)[0] if edges.size else np.zeros(0, np.int64)
    curve, picks = _windowed_mean(books, options=options)
    return {
        out.DATASET: dataset,
        out.TASK: task_name,
        out.ST_EPISODES_READ: n_kept + n_dropped + n_rejected,
        out.ST_EPISODES_WITH_RETURN: len(books.returns),
        out.ST_WINDOW: threshold.window if threshold is not None else None,
        out.ST_EXPERT_RETURN: threshold.expert_return if threshold is not None else None,
        out.ST_THRESHOLD: threshold.threshold if threshold is not None else None,
        out.ST_FRACTION: float(threshold.fraction if threshold is not None else options.fraction),
        out.ST_CAP: int(threshold.cap if threshold is not None else options.cap),
        out.ST_NO_FILTER: bool(options.no_filter),
        out.ST_WINDOW_START: threshold.window_start if threshold is not None else None,
        out.ST_KEPT: n_kept,
        out.ST_DROPPED: n_dropped,
        out.ST_REJECTED: n_rejected,
        out.ST_REJECTED_BY_REASON: dict(sorted(by_reason.items())),
        out.ST_RETURN_MIN: all_min,
        out.ST_RETURN_MEDIAN: all_median,
        out.ST_RETURN_MAX: all_max,
        out.ST_KEPT_RETURN_MIN: kept_min,
        out.ST_KEPT_RETURN_MEDIAN: kept_median,
        out.ST_KEPT_RETURN_MAX: kept_max,
        out.ST_KEPT_TIMESTEPS: int(sum(row.timesteps for row in tokenized.values())),
        out.ST_KEPT_TOKENS: int(sum(row.tokens for row in tokenized.values())),
        out.ST_HISTOGRAM_EDGES: [float(x) for x in edges],
        out.ST_HISTOGRAM_ALL: [int(x) for x in hist_all],
        out.ST_HISTOGRAM_KEPT: [int(x) for x in hist_kept],
        out.ST_WINDOWED_MEAN_START: [int(x) for x in picks],
        out.ST_WINDOWED_MEAN: [float(curve[i]) for i in picks],
        out.ST_SEQUENCES: int(sequenced.sequences),
        out.ST_PROMPTED_SEQUENCES: int(sequenced.prompted),
        out.ST_UNPROMPTED_SEQUENCES: int(sequenced.unprompted),
        out.ST_PROMPTS_UNAVAILABLE: int(sequenced.prompts_unavailable),
        out.ST_SEQUENCE_TOKENS: int(sequenced.tokens),
    }
