"""Beam stages of sequencing: per-task prompt pools (pass 1) and sequencing (pass 2).

- `prompt_candidate_for`: pass 1, one episode -> (TaskKey, PromptCandidate), tokenizing
  only the timesteps of its prompt windows.
- `PromptCandidateKeys`: pass 1, per task, the keys of the top-K episodes by the pool
  order, from their returns alone (the only episodes whose windows pass 1 tokenizes).
- `PromptPools` / `PromptPoolCombine`: per task, the top-K candidates by (return
  descending, stable hash); mergeable, memory bounded by K candidates per task.
- `SequenceEpisodes`: (EpisodeKey, TokenizedEpisode) -> (EpisodeKey, SequenceBatch),
  with the pools and the filter thresholds as side inputs. A candidate prompts an
  episode only if its return reaches the task threshold and it is another episode.
  An episode that cannot be cut (a timestep longer than L) is a `Reject` on the
  `rejects` tagged output, or with `strict` an error naming file and episode.

Counters (namespace `gato.sequence`, names `<dataset>/<task>/<what>`): sequences,
prompted_sequences, unprompted_sequences, prompts_unavailable (rows that drew a prompt
while the task had no eligible other episode: a one-episode task shows all its draws
here), sequence_tokens (before padding), rejected.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

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
# Compact per-episode tuples grouped per task (what the stage holds in memory).
ReturnRow = tuple[tuple[Any, ...], str, float, str]  # sort_key, episode_id, return, source_file
DecisionRow = tuple[str, bool, str]  # episode_id, kept, reason
KeptRow = tuple[str, float, int, int]  # episode_id, return, timesteps, tokens
RejectRow = tuple[str | None, str, str, str | None, str]  # episode_id, source_file, reason, field, detail


@dataclasses.dataclass(frozen=True)
class StatsOptions:
    """How the statistics are computed; fraction/cap/no_filter mirror the filter's flags."""

    fraction: float = DEFAULT_FRACTION
    cap: int = DEFAULT_CAP
    no_filter: bool = False
    bins: int = HISTOGRAM_BINS
    max_curve_points: int = MAX_CURVE_POINTS


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
    """One row per rejected episode: the same episode rejected identically twice (both passes
    validate) counts once; the same episode rejected for two different reasons is kept
    once with its first reason in sorted order, so the count stays one per episode."""
    by_episode: dict[tuple[str | None, str], RejectRow] = {}
    unnamed: list[RejectRow] = []
    for row in sorted(set(rejects), key=lambda r: tuple("" if x is None else str(x) for x in r)):
        if row[0] is None:
            unnamed.append(row)  # an unreadable record: no id to deduplicate on
        else:
            by_episode.setdefault((row[0], row[1]), row)
    return list(by_episode.values()) + unnamed


def task_statistics(
    task: TaskKey,
    *,
    threshold: TaskThreshold | None,
    returns: Iterable[ReturnRow],
    decisions: Iterable[DecisionRow],
    kept: Iterable[KeptRow],
    rejects: Iterable[RejectRow],
    options: StatsOptions = StatsOptions(),
    sequences: SequenceCounts | None = None,
) -> tuple[dict[str, Any], pa.Table]:
    """The stats record (keys `schemas.output.ST_*`) and per-episode table of one task.

    `sequences` is the task's summed sequencing counts (None: not sequenced, columns 0).
    Raises ValueError when the books do not balance (an episode lost between stages,
    counted twice, kept and rejected at once, or sequenced a different number of times
    than kept): trainers must be able to trust that exactly the counted episodes went in.
    """
    dataset, task_name = task
    returns = list(returns)
    order = collection_order(task, [row[0] for row in returns])
    returns = [returns[i] for i in order]
    ids = [row[1] for row in returns]
    values = np.fromiter((row[2] for row in returns), dtype=np.float64, count=len(returns))
    id_set = set(ids)
    if len(id_set) != len(ids):
        duplicate = next(i for i, c in collections.Counter(ids).items() if c > 1)
        raise ValueError(f"task {task}: episode id {duplicate!r} has two returns (read twice?)")
    if threshold is not None and threshold.n != len(returns):
        raise ValueError(
            f"task {task}: the threshold was computed over {threshold.n} episodes but "
            f"{len(returns)} returns reached the statistics"
        )
    if threshold is None and returns:
        raise ValueError(f"task {task}: {len(returns)} valid episodes but no threshold")

    decided: dict[str, DecisionRow] = {}
    for row in decisions:
        if row[0] in decided:
            raise ValueError(f"task {task}: episode {row[0]!r} was filtered twice")
        decided[row[0]] = row
    tokenized: dict[str, KeptRow] = {}
    for row in kept:
        if row[0] in tokenized:
            raise ValueError(f"task {task}: episode {row[0]!r} was tokenized twice")
        if not (row[0] in decided and decided[row[0]][1]):
            raise ValueError(f"task {task}: episode {row[0]!r} was tokenized but not kept by the filter")
        tokenized[row[0]] = row
    reject_rows = _dedupe_rejects(rejects)
    rejected_ids = {row[0]: row for row in reject_rows if row[0] is not None}
    # A stage after tokenization (sequencing) may still reject a tokenized episode: it never
    # reaches the output, so it counts as rejected, not kept.
    for episode_id in [e for e in tokenized if e in rejected_ids]:
        del tokenized[episode_id]
    # Membership tests instead of set algebra: no copy of a million-episode id set.
    both = sorted(e for e in rejected_ids if e in decided and not decided[e][1])
    if both:
        raise ValueError(f"task {task}: episode {both[0]!r} is counted both as rejected and as dropped")
    lost = sorted(
        episode_id
        for episode_id, row in decided.items()
        if row[1] and episode_id not in tokenized and episode_id not in rejected_ids
    )
    if lost:
        raise ValueError(
            f"task {task}: {len(lost)} episode(s) kept by the filter were neither tokenized nor "
            f"rejected, e.g. {lost[0]!r}"
        )
    unknown = sorted(e for e in decided if e not in id_set)
    if unknown:
        raise ValueError(f"task {task}: episode {unknown[0]!r} was filtered but has no pass-1 return")
    missing = sorted(e for e in ids if e not in decided and e not in rejected_ids)
    if missing:
        raise ValueError(
            f"task {task}: {len(missing)} valid episode(s) never reached the filter nor a reject, "
            f"e.g. {missing[0]!r}"
        )

    n_kept = len(tokenized)
    if sequences is not None:
        _check_sequence_counts(task, sequences, n_kept)
    sequenced = sequences if sequences is not None else SequenceCounts()
    n_dropped = sum(1 for row in decided.values() if not row[1])
    n_rejected = len(reject_rows)
    by_reason = collections.Counter(row[2] for row in reject_rows)
    kept_values = np.fromiter((row[1] for row in tokenized.values()), dtype=np.float64, count=n_kept)
    all_min, all_median, all_max = _summary(values)
    kept_min, kept_median, kept_max = _summary(kept_values)
    edges = histogram_edges(values, options.bins)
    hist_all = np.histogram(values, edges)[0] if edges.size else np.zeros(0, np.int64)
    hist_kept = np.histogram(kept_values, edges)[0] if edges.size else np.zeros(0, np.int64)
    if threshold is not None:
        curve = window_sums(values, threshold.window) / threshold.window
        picks = downsample_curve(curve, options.max_curve_points, threshold.window_start)
    else:
        curve = picks = np.zeros(0, dtype=np.int64)

    record: dict[str, Any] = {
        out.DATASET: dataset,
        out.TASK: task_name,
        out.ST_EPISODES_READ: n_kept + n_dropped + n_rejected,
        out.ST_EPISODES_WITH_RETURN: len(returns),
        out.ST_WINDOW: threshold.window if threshold else None,
        out.ST_EXPERT_RETURN: threshold.expert_return if threshold else None,
        out.ST_THRESHOLD: threshold.threshold if threshold else None,
        out.ST_FRACTION: float(threshold.fraction if threshold else options.fraction),
        out.ST_CAP: int(threshold.cap if threshold else options.cap),
        out.ST_NO_FILTER: bool(options.no_filter),
        out.ST_WINDOW_START: threshold.window_start if threshold else None,
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
        out.ST_KEPT_TIMESTEPS: int(sum(row[2] for row in tokenized.values())),
        out.ST_KEPT_TOKENS: int(sum(row[3] for row in tokenized.values())),
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
    return record, _episodes_table(task, returns, values, decided, tokenized, rejected_ids, reject_rows)


def _check_sequence_counts(task: TaskKey, counts: SequenceCounts, n_kept: int) -> None:
    """Every kept episode (tokenized, not rejected) is sequenced exactly once, and every
    row is either prompted or not."""
    if counts.episodes != n_kept:
        raise ValueError(
            f"task {task}: sequencing counted {counts.episodes} episode(s) but {n_kept} were kept "
            "(an episode sequenced twice, or kept but never sequenced)"
        )
    if counts.prompted + counts.unprompted != counts.sequences:
        raise ValueError(
            f"task {task}: {counts.prompted} prompted + {counts.unprompted} unprompted rows "
            f"!= {counts.sequences} sequences"
        )
    if not 0 <= counts.prompts_unavailable <= counts.unprompted:
        raise ValueError(
            f"task {task}: {counts.prompts_unavailable} rows without an available prompt but only "
            f"{counts.unprompted} unprompted rows"
        )


def _episodes_table(
    task: TaskKey,
    returns: Sequence[ReturnRow],
    values: np.ndarray,
    decided: Mapping[str, DecisionRow],
    tokenized: Mapping[str, KeptRow],
    rejected_ids: Mapping[str, RejectRow],
    reject_rows: Sequence[RejectRow],
) -> pa.Table:
    """One row per episode read: valid ones in collection order, then rejects without a return."""
    episode_ids: list[str | None] = []
    decision: list[str] = []
    reason: list[str] = []
    source: list[str | None] = []
    for episode_id, row in zip((r[1] for r in returns), returns):
        episode_ids.append(episode_id)
        source.append(row[3])
        if episode_id in tokenized:
            decision.append(out.DECISION_KEPT)
            reason.append(decided[episode_id][2])
        elif episode_id in rejected_ids:
            decision.append(out.DECISION_REJECTED)
            reason.append(rejected_ids[episode_id][2])
        else:
            decision.append(out.DECISION_DROPPED)
            reason.append(decided[episode_id][2])
    with_return = set(episode_ids)
    orphans = sorted(
        (row for row in reject_rows if row[0] is None or row[0] not in with_return),
        key=lambda r: (r[1], "" if r[0] is None else r[0], r[2]),
    )
    n, m = len(returns), len(orphans)
    columns = {
        out.DATASET: [task[0]] * (n + m),
        out.TASK: [task[1]] * (n + m),
        out.EPISODE_ID: episode_ids + [row[0] for row in orphans],
        out.EP_COLLECTION_INDEX: pa.array(
            np.arange(n, dtype=np.int64).tolist() + [None] * m, type=pa.int64()
        ),
        out.EP_RETURN: pa.array(values.tolist() + [None] * m, type=pa.float64()),
        out.EP_DECISION: decision + [out.DECISION_REJECTED] * m,
        out.REASON: reason + [row[2] for row in orphans],
        out.SOURCE_FILE: source + [row[1] for row in orphans],
    }
    return pa.table(columns, schema=out.STATS_EPISODES_SCHEMA)
