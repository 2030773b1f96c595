"""Per-task books (spec section 4): every episode read counted exactly once. Pure numpy, no Beam.

`check_columns` joins and checks what the job knows about one task (threshold, returns,
filter decisions, kept and tokenized episodes, rejects, summed sequencing counts) into
`TaskBooks`: read = kept + dropped + rejected; a kept episode is tokenized or rejected,
never lost; a tokenized episode a later stage (sequencing) rejects counts as rejected;
the copies of a duplicate id are counted one by one; with sequencing counts, every kept
episode was sequenced exactly once. `check_books` is the same for row tuples (the row
types below, or plain tuples in the same field order).

Scale: the per-episode rows arrive as compact columns (`transforms.book_columns`), and
the join is numpy over them: every episode id becomes an integer code (`np.unique`),
and each check is a boolean mask over the codes. Nothing builds a dict or an object per
episode, so a task of a million episodes costs a few hundred bytes each.
`transforms.book_summary` turns the books into the stats record,
`formats.stats_files.episodes_table` into the per-episode audit table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from transforms.book_columns import (
    DecisionColumns,
    KeptColumns,
    ReturnColumns,
    StringColumn,
    key_text,
    text_keys,
)
from transforms.episode import TaskKey
from transforms.expert_filter import DEFAULT_CAP, DEFAULT_FRACTION, TaskThreshold
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


# Outcomes of the episodes with a return, in `TaskBooks.outcome`.
KEPT, DROPPED, REJECTED = 0, 1, 2


@dataclasses.dataclass(frozen=True, eq=False)
class TaskBooks:
    """The checked books of one task (`check_columns`), as columns.

    The episodes with a return are indexed in collection order: `order[i]` is the row of
    the i-th in `episode_ids` and `file_index`; `values[i]` its return; `outcome[i]` is
    KEPT (tokenized, not rejected), DROPPED or REJECTED and `reason[i]` its reason (the
    filter's for kept and dropped, the reject's for rejected) in `reasons`. `kept_values`
    holds the tokenized episodes' returns. `reject_rows` has one row per rejected episode
    (plus one per unreadable record); `orphans` are those without a return, in the audit
    table's order. `sequences.episodes == kept` when the job sequenced (zeros otherwise).
    """

    task: TaskKey
    threshold: TaskThreshold | None
    episode_ids: StringColumn
    order: np.ndarray  # int64 [n]
    values: np.ndarray  # float64 [n], collection order
    file_index: np.ndarray  # int64 [n], collection order, into `files`
    files: tuple[str, ...]
    outcome: np.ndarray  # int8 [n], collection order
    reason: np.ndarray  # int32 [n], collection order, into `reasons`
    reasons: tuple[str, ...]
    kept_values: np.ndarray  # float64, one per kept episode
    kept_timesteps: int
    kept_tokens: int
    dropped: int
    reject_rows: tuple[RejectRow, ...]
    orphans: tuple[RejectRow, ...]
    sequences: SequenceCounts

    @property
    def counts(self) -> tuple[int, int, int]:
        """(kept, dropped, rejected); their sum is the episodes read."""
        return int(self.kept_values.size), self.dropped, len(self.reject_rows)

    def ids_in_order(self) -> list[str]:
        """The episode ids with a return, in collection order (for tests and small tasks)."""
        return [self.episode_ids.text(int(i)) for i in self.order]


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


def _orphan_sort_key(row: RejectRow) -> tuple[str, str, str, str]:
    return (row.source_file, "" if row.episode_id is None else row.episode_id, row.reason, row.detail)


def _mask(size: int, codes: np.ndarray) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[codes] = True
    return mask


class _Codes:
    """Every episode id of the task as an integer code (codes follow the ids' UTF-8 order),
    and the codes of each kind of row."""

    def __init__(self, *kinds: np.ndarray) -> None:
        keys = np.concatenate(kinds) if any(k.size for k in kinds) else np.zeros(0, dtype="S1")
        self.unique, inverse = np.unique(keys, return_inverse=True)
        self.of = np.split(inverse.reshape(-1), np.cumsum([k.size for k in kinds])[:-1])
        self.size = int(self.unique.size)

    def name(self, code: int) -> str:
        return key_text(self.unique[code])

    def first_repeated(self, codes: np.ndarray) -> str | None:
        """The id (least in code order) appearing more than once in `codes`, if any."""
        repeated = np.flatnonzero(np.bincount(codes, minlength=self.size) > 1)
        return self.name(int(repeated[0])) if repeated.size else None


def _check_returns(task: TaskKey, codes: _Codes, returns: np.ndarray, threshold: TaskThreshold | None) -> None:
    """One return per episode, as many as the threshold saw."""
    twice = codes.first_repeated(returns)
    if twice is not None:
        raise ValueError(f"task {task}: episode id {twice!r} has two returns (read twice?)")
    if threshold is not None and threshold.n != returns.size:
        raise ValueError(f"task {task}: the threshold was computed over {threshold.n} episodes but "
                         f"{returns.size} returns reached the statistics")
    if threshold is None and returns.size:
        raise ValueError(f"task {task}: {returns.size} valid episodes but no threshold")


def _check_tokenized(task: TaskKey, codes: _Codes, kept: np.ndarray, *, kept_by_filter: np.ndarray) -> None:
    """Each episode tokenized once, and only if the filter kept it."""
    twice = codes.first_repeated(kept)
    if twice is not None:
        raise ValueError(f"task {task}: episode {twice!r} was tokenized twice")
    unkept = kept[~kept_by_filter[kept]]
    if unkept.size:
        raise ValueError(f"task {task}: episode {codes.name(int(unkept.min()))!r} was tokenized but not kept by the filter")


def _check_balance(
    task: TaskKey, codes: _Codes, *, decided: np.ndarray, kept_by_filter: np.ndarray, tokenized: np.ndarray,
    rejected: np.ndarray, has_return: np.ndarray,
) -> None:
    """Every episode is counted exactly once: dropped, kept (tokenized) or rejected (masks over codes)."""
    both = np.flatnonzero(rejected & decided & ~kept_by_filter)
    if both.size:
        raise ValueError(f"task {task}: episode {codes.name(int(both[0]))!r} is counted both as rejected and as dropped")
    lost = np.flatnonzero(decided & kept_by_filter & ~tokenized & ~rejected)
    if lost.size:
        raise ValueError(
            f"task {task}: {lost.size} episode(s) kept by the filter were neither tokenized nor "
            f"rejected, e.g. {codes.name(int(lost[0]))!r}"
        )
    unknown = np.flatnonzero(decided & ~has_return)
    if unknown.size:
        raise ValueError(f"task {task}: episode {codes.name(int(unknown[0]))!r} was filtered but has no pass-1 return")
    missing = np.flatnonzero(has_return & ~decided & ~rejected)
    if missing.size:
        raise ValueError(
            f"task {task}: {missing.size} valid episode(s) never reached the filter nor a reject, "
            f"e.g. {codes.name(int(missing[0]))!r}"
        )


def check_columns(
    task: TaskKey,
    *,
    threshold: TaskThreshold | None,
    returns: ReturnColumns,
    decisions: DecisionColumns,
    kept: KeptColumns,
    rejects: Iterable[RejectRow],
    sequences: SequenceCounts | None = None,
) -> TaskBooks:
    """The task's books, joined and checked (`TaskBooks` invariants); `sequences` is the
    task's summed sequencing counts (None: not sequenced).

    Raises ValueError naming task and episode when the books do not balance (an episode
    lost between stages, counted twice, kept and rejected at once, or sequenced a different
    number of times than kept): trainers must trust that exactly the counted episodes went in.
    Where several episodes break one rule, the least id (in UTF-8 order) is named.
    """
    order = returns.returns.collection_order(task)  # refuses an episode read twice
    reject_rows = tuple(_dedupe_rejects(rejects))
    reject_reason = {row.episode_id: row.reason for row in reject_rows if row.episode_id is not None}
    codes = _Codes(returns.ids.keys(), decisions.ids.keys(), kept.ids.keys(), text_keys(reject_reason))
    return_codes, decision_codes, kept_codes, reject_codes = codes.of
    _check_returns(task, codes, return_codes, threshold)
    twice = codes.first_repeated(decision_codes)
    if twice is not None:
        raise ValueError(f"task {task}: episode {twice!r} was filtered twice")
    decided = _mask(codes.size, decision_codes)
    kept_by_filter = np.zeros(codes.size, dtype=bool)
    kept_by_filter[decision_codes] = np.frombuffer(decisions.kept, np.uint8).astype(bool)
    _check_tokenized(task, codes, kept_codes, kept_by_filter=kept_by_filter)
    rejected = _mask(codes.size, reject_codes)
    # A stage after tokenization (sequencing) may still reject a tokenized episode: it never
    # reaches the output, so it counts as rejected, not kept.
    tokenized = _mask(codes.size, kept_codes) & ~rejected
    has_return = _mask(codes.size, return_codes)
    _check_balance(task, codes, decided=decided, kept_by_filter=kept_by_filter, tokenized=tokenized,
                   rejected=rejected, has_return=has_return)
    kept_rows = tokenized[kept_codes]
    if sequences is not None:
        _check_sequence_counts(task, counts=sequences, n_kept=int(kept_rows.sum()))
    # Reasons: the filter's by code, then the rejects' (one vocabulary for the audit table).
    reasons = list(decisions.reasons.words)
    reason_of = np.full(codes.size, -1, dtype=np.int32)
    reason_of[decision_codes] = np.frombuffer(decisions.reason_codes, np.int32)
    reject_reasons = {word: len(reasons) + i for i, word in enumerate(sorted(set(reject_reason.values())))}
    reasons += list(reject_reasons)
    reason_of_reject = np.full(codes.size, -1, dtype=np.int32)
    reason_of_reject[reject_codes] = [reject_reasons[r] for r in reject_reason.values()]
    in_order = return_codes[order]
    outcome = np.where(tokenized[in_order], KEPT, np.where(rejected[in_order], REJECTED, DROPPED)).astype(np.int8)
    with_return = dict(zip(reject_reason, has_return[reject_codes].tolist()))
    return TaskBooks(
        task=task, threshold=threshold, episode_ids=returns.ids, order=order,
        values=np.frombuffer(returns.returns.values, np.float64)[order],
        file_index=np.frombuffer(returns.returns.file_index, np.int64)[order], files=tuple(returns.returns.files),
        outcome=outcome,
        reason=np.where(outcome == REJECTED, reason_of_reject[in_order], reason_of[in_order]).astype(np.int32),
        reasons=tuple(reasons),
        kept_values=np.frombuffer(kept.values, np.float64)[kept_rows],
        kept_timesteps=int(np.frombuffer(kept.timesteps, np.int64)[kept_rows].sum()),
        kept_tokens=int(np.frombuffer(kept.tokens, np.int64)[kept_rows].sum()),
        dropped=int((decided & ~kept_by_filter).sum()),
        reject_rows=reject_rows,
        orphans=tuple(sorted((r for r in reject_rows if not with_return.get(r.episode_id, False)), key=_orphan_sort_key)),
        sequences=sequences if sequences is not None else SequenceCounts(),
    )


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
    """`check_columns` of row tuples (the row types above, in any order)."""
    return check_columns(
        task, threshold=threshold, returns=ReturnColumns.of(returns), decisions=DecisionColumns.of(decisions),
        kept=KeptColumns.of(kept), rejects=rejects, sequences=sequences,
    )
