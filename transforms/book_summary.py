"""The stats record of one task's checked books (spec section 4). Pure numpy, no Beam.

`summarize_books` turns `transforms.books.TaskBooks` into the record the statistics files
and the report carry (keys `schemas.output.ST_*`): N, W, E and the threshold, kept,
dropped and rejected (with reasons), return min/median/max of all and of kept episodes,
kept timesteps and tokens, a return histogram, the windowed mean return over collection
order (at most `StatsOptions.max_curve_points` points, E's window always among them) and
the sequencing counts. Everything is computed over the books' columns: a task of a
million episodes gives a record of a few KB.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from schemas import output as out
from transforms.books import StatsOptions, TaskBooks
from transforms.expert_filter import window_sums


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
    threshold, values, kept_values, sequenced = books.threshold, books.values, books.kept_values, books.sequences
    n_kept, n_dropped, n_rejected = books.counts
    by_reason = collections.Counter(row.reason for row in books.reject_rows)
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
        out.ST_EPISODES_WITH_RETURN: int(values.size),
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
        out.ST_KEPT_TIMESTEPS: books.kept_timesteps,
        out.ST_KEPT_TOKENS: books.kept_tokens,
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
