"""The stats record of checked books (transforms/book_summary.py): exact numbers of a small
task, the record without a threshold, histogram edges and the downsampled windowed mean."""

from __future__ import annotations

import numpy as np

from formats.stats_files import task_statistics
from schemas import output as out
from tests.transforms.test_books import SMALL_COUNTS, SMALL_THRESHOLD, TASK, _small_inputs
from transforms.book_summary import downsample_curve, histogram_edges, summarize_books
from transforms.books import StatsOptions, check_books


def test_summarize_books_of_a_small_task() -> None:
    books = check_books(TASK, threshold=SMALL_THRESHOLD, sequences=SMALL_COUNTS, **_small_inputs())
    record = summarize_books(books, options=StatsOptions(bins=2, max_curve_points=2))
    assert record == {
        out.DATASET: "atari",
        out.TASK: "rlu_atari/Pong_run_1",
        out.ST_EPISODES_READ: 5,  # 1 kept + 2 dropped + 2 rejected (one without a return)
        out.ST_EPISODES_WITH_RETURN: 4,
        out.ST_WINDOW: 1,
        out.ST_EXPERT_RETURN: 4.0,
        out.ST_THRESHOLD: 3.2,
        out.ST_FRACTION: 0.8,
        out.ST_CAP: 1000,
        out.ST_NO_FILTER: False,
        out.ST_WINDOW_START: 1,
        out.ST_KEPT: 1,
        out.ST_DROPPED: 2,
        out.ST_REJECTED: 2,
        out.ST_REJECTED_BY_REASON: {"corrupt_record": 1, "timestep_too_long": 1},
        out.ST_RETURN_MIN: 1.0,
        out.ST_RETURN_MEDIAN: 2.75,  # (2.0 + 3.5) / 2
        out.ST_RETURN_MAX: 4.0,
        out.ST_KEPT_RETURN_MIN: 4.0,
        out.ST_KEPT_RETURN_MEDIAN: 4.0,
        out.ST_KEPT_RETURN_MAX: 4.0,
        out.ST_KEPT_TIMESTEPS: 10,
        out.ST_KEPT_TOKENS: 80,
        out.ST_HISTOGRAM_EDGES: [1.0, 2.5, 4.0],
        out.ST_HISTOGRAM_ALL: [2, 2],  # {1, 2} and {3.5, 4}
        out.ST_HISTOGRAM_KEPT: [0, 1],
        # W = 1: the curve is the returns; 2 evenly spaced points (0, 3) plus E's window (1).
        out.ST_WINDOWED_MEAN_START: [0, 1, 3],
        out.ST_WINDOWED_MEAN: [1.0, 4.0, 3.5],
        out.ST_SEQUENCES: 3,
        out.ST_PROMPTED_SEQUENCES: 1,
        out.ST_UNPROMPTED_SEQUENCES: 2,
        out.ST_PROMPTS_UNAVAILABLE: 1,
        out.ST_SEQUENCE_TOKENS: 95,
    }
    assert list(record) == out.STATS_SCHEMA.names  # the files' column order


def test_summarize_books_without_a_threshold_uses_the_options() -> None:
    books = check_books(TASK, threshold=None, returns=[], decisions=[], kept=[], rejects=[])
    record = summarize_books(books, options=StatsOptions(fraction=0.5, cap=7, no_filter=True))
    assert (record[out.ST_FRACTION], record[out.ST_CAP], record[out.ST_NO_FILTER]) == (0.5, 7, True)
    assert record[out.ST_EPISODES_READ] == 0 and record[out.ST_THRESHOLD] is None
    assert record[out.ST_KEPT_RETURN_MEDIAN] is None and record[out.ST_HISTOGRAM_ALL] == []
    assert record[out.ST_WINDOWED_MEAN_START] == [] and record[out.ST_SEQUENCES] == 0


def test_task_statistics_is_check_then_summarize() -> None:
    inputs = _small_inputs()
    record, _ = task_statistics(TASK, threshold=SMALL_THRESHOLD, sequences=SMALL_COUNTS, **inputs)
    books = check_books(TASK, threshold=SMALL_THRESHOLD, sequences=SMALL_COUNTS, **inputs)
    assert record == summarize_books(books, options=StatsOptions())


def test_curve_downsampling_keeps_the_expert_window() -> None:
    curve = np.arange(10_000, dtype=np.float64)
    picks = downsample_curve(curve, 500, 4321)
    assert len(picks) <= 501 and 4321 in picks and picks[0] == 0 and picks[-1] == 9999
    assert np.all(np.diff(picks) > 0)
    assert downsample_curve(curve[:7], 500, 3).tolist() == list(range(7))


def test_histogram_edges_of_a_single_value() -> None:
    assert histogram_edges(np.array([4.0, 4.0]), 4).tolist() == [3.5, 3.75, 4.0, 4.25, 4.5]
