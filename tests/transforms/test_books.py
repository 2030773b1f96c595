"""Per-task books and the stats record (transforms/books.py): exact numbers, and books
that do not balance (read = kept + dropped + rejected) are an error."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

from formats.stats_files import task_statistics
from schemas import output as out
from transforms.books import (
    DROPPED,
    KEPT,
    REJECTED,
    RejectRow,
    SequenceCounts,
    StatsOptions,
    TaskBooks,
    check_books,
)
from transforms.expert_filter import TaskThreshold, expert_return
from transforms.sequence import TIMESTEP_TOO_LONG
from transforms.verdict import DUPLICATE_EPISODE_ID

TASK = ("atari", "rlu_atari/Pong_run_1")
SEQUENCING_COLUMNS = (
    out.ST_SEQUENCES, out.ST_PROMPTED_SEQUENCES, out.ST_UNPROMPTED_SEQUENCES,
    out.ST_PROMPTS_UNAVAILABLE, out.ST_SEQUENCE_TOKENS,
)


def return_rows(values: list[float]) -> list[tuple]:
    """Return rows in collection order: sort key, id, return, file."""
    return [(((i,), "shard-0", i), f"e{i}", float(v), "shard-0") for i, v in enumerate(values)]


def book_rows(values: list[float], *, tokenize_reject: set[str] = frozenset(), fraction: float = 0.8):
    """Threshold, decisions, kept and rejects of balanced books over `values` (ids e0, e1, ...)."""
    threshold = expert_return(values, fraction=fraction)
    decisions = [(f"e{i}", threshold.keeps(v), "r") for i, v in enumerate(values)]
    kept = [(f"e{i}", float(v), 3, 30) for i, v in enumerate(values) if threshold.keeps(v) and f"e{i}" not in tokenize_reject]
    rejects = [(episode, "shard-0", "non_finite", "observation/x", "NaN") for episode in sorted(tokenize_reject)]
    return threshold, decisions, kept, rejects


# --- task_statistics: the record through the whole composition (formats.stats_files) ---


def test_exact_numbers_of_one_task() -> None:
    values = [-21.0, -20.0, -19.0, -15.0, -18.0, -10.0, -9.0, -12.0, -8.0, -11.0, -20.0, -9.0]
    threshold, decisions, kept, rejects = book_rows(values, tokenize_reject={"e8"})
    rejects.append((None, "shard-1", "corrupt_record", None, "bad CRC"))
    record, episodes = task_statistics(
        TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept, rejects=rejects
    )
    # W = 1 (N = 12), E = -8, threshold = -8 - 0.2 * 8 = -9.6: kept -9, -8, -9; -8 rejected later.
    assert record[out.ST_WINDOW] == 1 and record[out.ST_EXPERT_RETURN] == -8.0
    assert record[out.ST_THRESHOLD] == -9.6 and record[out.ST_WINDOW_START] == 8
    assert (record[out.ST_KEPT], record[out.ST_DROPPED], record[out.ST_REJECTED]) == (2, 9, 2)
    assert record[out.ST_EPISODES_READ] == 13 and record[out.ST_EPISODES_WITH_RETURN] == 12
    assert record[out.ST_REJECTED_BY_REASON] == {"corrupt_record": 1, "non_finite": 1}
    assert (record[out.ST_RETURN_MIN], record[out.ST_RETURN_MEDIAN], record[out.ST_RETURN_MAX]) == (-21.0, -13.5, -8.0)
    assert (record[out.ST_KEPT_RETURN_MIN], record[out.ST_KEPT_RETURN_MEDIAN], record[out.ST_KEPT_RETURN_MAX]) == (-9.0, -9.0, -9.0)
    assert (record[out.ST_KEPT_TIMESTEPS], record[out.ST_KEPT_TOKENS]) == (6, 60)
    assert sum(record[out.ST_HISTOGRAM_ALL]) == 12 and sum(record[out.ST_HISTOGRAM_KEPT]) == 2
    assert len(record[out.ST_HISTOGRAM_EDGES]) == 21
    assert record[out.ST_HISTOGRAM_EDGES][0] == -21.0 and record[out.ST_HISTOGRAM_EDGES][-1] == -8.0
    assert record[out.ST_WINDOWED_MEAN] == values and record[out.ST_WINDOWED_MEAN_START] == list(range(12))
    rows = episodes.to_pylist()
    assert [r[out.EP_DECISION] for r in rows] == ["dropped"] * 6 + ["kept", "dropped", "rejected", "dropped", "dropped", "kept", "rejected"]
    assert rows[8][out.REASON] == "non_finite" and rows[8][out.EP_COLLECTION_INDEX] == 8
    assert rows[-1] == {
        out.DATASET: TASK[0], out.TASK: TASK[1], out.EPISODE_ID: None, out.EP_COLLECTION_INDEX: None,
        out.EP_RETURN: None, out.EP_DECISION: "rejected", out.REASON: "corrupt_record", out.SOURCE_FILE: "shard-1",
    }


def test_a_task_whose_every_episode_was_rejected() -> None:
    rejects = [(f"e{i}", "s", "discrete_out_of_range", "action", "1024") for i in range(3)]
    record, episodes = task_statistics(TASK, threshold=None, returns=[], decisions=[], kept=[], rejects=rejects)
    assert record[out.ST_EPISODES_READ] == 3 and record[out.ST_REJECTED] == 3
    assert record[out.ST_WINDOW] is None and record[out.ST_EXPERT_RETURN] is None and record[out.ST_RETURN_MEDIAN] is None
    assert record[out.ST_HISTOGRAM_EDGES] == [] and record[out.ST_WINDOWED_MEAN] == []
    assert episodes.num_rows == 3


def test_the_same_reject_from_both_passes_counts_once() -> None:
    reject = ("e1", "s", "bad_shape", "observation/image", "3 vs 4")
    record, _ = task_statistics(TASK, threshold=None, returns=[], decisions=[], kept=[], rejects=[reject, reject])
    assert record[out.ST_REJECTED] == 1


def test_every_copy_of_a_duplicate_id_counts_even_in_one_file() -> None:
    # Issue 13, defect 6: three copies of id e1, two of them in one file; their details differ.
    copies = [("e1", file, DUPLICATE_EPISODE_ID, "episode_id", f"{file} record {record}: also elsewhere")
              for file, record in (("a", 0), ("a", 4), ("b", 2))]
    values = [1.0, 3.0]
    threshold, decisions, kept, _ = book_rows(values)
    returns = [(((0,), "a", 1), "e0", 1.0, "a"), (((2,), "b", 0), "e2", 3.0, "b")]
    decisions = [("e0", False, "r"), ("e2", True, "r")]
    kept = [("e2", 3.0, 3, 30)]
    record, episodes = task_statistics(TASK, threshold=threshold, returns=returns, decisions=decisions, kept=kept,
                                       rejects=copies + copies[:1])  # an identical row still counts once
    assert (record[out.ST_EPISODES_READ], record[out.ST_KEPT], record[out.ST_DROPPED], record[out.ST_REJECTED]) == (5, 1, 1, 3)
    assert record[out.ST_REJECTED_BY_REASON] == {DUPLICATE_EPISODE_ID: 3}
    assert episodes.column(out.SOURCE_FILE).to_pylist() == ["a", "b", "a", "a", "b"]


def test_no_filter_keeps_everything_and_still_reports_the_threshold() -> None:
    values = [1.0, 5.0, 9.0]
    threshold = expert_return(values)
    decisions = [(f"e{i}", True, out.FILTER_NO_FILTER) for i in range(3)]
    kept = [(f"e{i}", v, 1, 2) for i, v in enumerate(values)]
    record, _ = task_statistics(
        TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept, rejects=[],
        options=StatsOptions(no_filter=True),
    )
    assert record[out.ST_NO_FILTER] and record[out.ST_KEPT] == 3 and record[out.ST_THRESHOLD] == 7.2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d, k, r: k.pop(), "neither tokenized nor rejected"),
        (lambda d, k, r: r.append(("e0", "s", "x", None, "y")), "both as rejected and as dropped"),
        (lambda d, k, r: d.append(d[0]), "filtered twice"),
        (lambda d, k, r: k.append(k[0]), "tokenized twice"),
        (lambda d, k, r: k.append(("e0", 0.0, 1, 1)), "not kept by the filter"),
        (lambda d, k, r: d.pop(0), "never reached the filter"),
        (lambda d, k, r: d.append(("ghost", False, "r")), "no pass-1 return"),
    ],
)
def test_books_that_do_not_balance_are_an_error(mutate, message: str) -> None:
    values = [float(v) for v in range(10)]
    threshold, decisions, kept, rejects = book_rows(values)
    mutate(decisions, kept, rejects)
    with pytest.raises(ValueError, match=message):
        task_statistics(TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept, rejects=rejects)


def test_a_tokenized_episode_rejected_by_sequencing_counts_as_rejected() -> None:
    values = [float(v) for v in range(10)]  # W = 1, E = 9, threshold 7.2: e8, e9 kept
    threshold, decisions, kept, rejects = book_rows(values)
    rejects.append(("e9", "shard-0", "timestep_too_long", None, "1100 > 1024 tokens"))
    record, episodes = task_statistics(
        TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept, rejects=rejects
    )
    assert (record[out.ST_KEPT], record[out.ST_DROPPED], record[out.ST_REJECTED]) == (1, 8, 1)
    assert (record[out.ST_KEPT_TIMESTEPS], record[out.ST_KEPT_RETURN_MAX]) == (3, 8.0)
    assert episodes.to_pylist()[9][out.EP_DECISION] == out.DECISION_REJECTED


def test_sequencing_columns_are_zero_without_counts() -> None:
    values = [float(v) for v in range(10)]
    threshold, decisions, kept, rejects = book_rows(values)
    record, _ = task_statistics(TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept, rejects=rejects)
    assert [record[c] for c in SEQUENCING_COLUMNS] == [0, 0, 0, 0, 0]


def test_sequencing_counts_fill_the_columns() -> None:
    values = [float(v) for v in range(10)]  # e8, e9 kept; e9 rejected by sequencing
    threshold, decisions, kept, rejects = book_rows(values)
    rejects.append(("e9", "shard-0", TIMESTEP_TOO_LONG, None, "1100 > 1024 tokens"))
    counts = SequenceCounts(episodes=1, sequences=7, prompted=3, unprompted=4, prompts_unavailable=1, tokens=123)
    record, _ = task_statistics(
        TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept, rejects=rejects,
        sequences=counts,
    )
    assert record[out.ST_KEPT] == 1
    assert [record[c] for c in SEQUENCING_COLUMNS] == [7, 3, 4, 1, 123]


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (SequenceCounts(episodes=1, sequences=2, prompted=1, unprompted=1, tokens=9), "sequencing counted 1 episode"),
        (SequenceCounts(episodes=3, sequences=2, prompted=1, unprompted=1, tokens=9), "sequencing counted 3 episode"),
        (SequenceCounts(), "sequencing counted 0 episode"),
        (SequenceCounts(episodes=2, sequences=3, prompted=1, unprompted=1, tokens=9), "1 prompted + 1 unprompted rows != 3 sequences"),
        (SequenceCounts(episodes=2, sequences=2, prompted=1, unprompted=1, prompts_unavailable=2, tokens=9), "2 rows without an available prompt"),
    ],
)
def test_sequence_counts_that_do_not_balance_are_an_error(counts: SequenceCounts, message: str) -> None:
    values = [float(v) for v in range(10)]  # e8, e9 kept and tokenized
    threshold, decisions, kept, rejects = book_rows(values)
    with pytest.raises(ValueError, match=f"task {re.escape(str(TASK))}: {re.escape(message)}"):
        task_statistics(
            TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept, rejects=rejects,
            sequences=counts,
        )


def test_threshold_over_other_episodes_is_an_error() -> None:
    threshold, decisions, _, _ = book_rows([1.0, 2.0])
    with pytest.raises(ValueError, match="computed over 2 episodes"):
        task_statistics(TASK, threshold=threshold, returns=return_rows([1.0]), decisions=decisions[:1], kept=[], rejects=[])


# --- check_books ---

# Four episodes, shuffled on arrival: W = 1, E = 4.0 (e1), threshold 3.2 keeps e1 and e3;
# e3 is rejected after tokenization (sequencing), and one record was unreadable.
SMALL_VALUES = [1.0, 4.0, 2.0, 3.5]
SMALL_THRESHOLD = TaskThreshold(n=4, window=1, expert_return=4.0, threshold=3.2, window_start=1, fraction=0.8, cap=1000)


def _small_inputs() -> dict[str, list[tuple]]:
    rows = return_rows(SMALL_VALUES)
    return {
        "returns": [rows[2], rows[0], rows[3], rows[1]],
        "decisions": [("e0", False, "below"), ("e1", True, "kept"), ("e2", False, "below"), ("e3", True, "kept")],
        "kept": [("e3", 3.5, 5, 40), ("e1", 4.0, 10, 80)],
        "rejects": [
            ("e3", "shard-0", "timestep_too_long", None, "1100 > 1024 tokens"),
            (None, "shard-9", "corrupt_record", None, "bad CRC"),
            ("e3", "shard-0", "timestep_too_long", None, "1100 > 1024 tokens"),  # both passes: counts once
        ],
    }


SMALL_COUNTS = SequenceCounts(episodes=1, sequences=3, prompted=1, unprompted=2, prompts_unavailable=1, tokens=95)


def test_check_books_orders_and_keeps_the_books() -> None:
    books = check_books(TASK, threshold=SMALL_THRESHOLD, sequences=SMALL_COUNTS, **_small_inputs())
    assert isinstance(books, TaskBooks)
    assert books.ids_in_order() == ["e0", "e1", "e2", "e3"]  # collection order, whatever the arrival
    assert books.values.tolist() == SMALL_VALUES and books.values.dtype == np.float64
    assert books.outcome.tolist() == [DROPPED, KEPT, DROPPED, REJECTED]  # e3 rejected after tokenizing
    assert [books.reasons[i] for i in books.reason] == ["below", "kept", "below", "timestep_too_long"]
    assert [books.files[i] for i in books.file_index] == ["shard-0"] * 4
    assert books.kept_values.tolist() == [4.0] and (books.kept_timesteps, books.kept_tokens) == (10, 80)
    assert books.reject_rows == (
        RejectRow("e3", "shard-0", "timestep_too_long", None, "1100 > 1024 tokens"),
        RejectRow(None, "shard-9", "corrupt_record", None, "bad CRC"),
    )
    assert books.orphans == (RejectRow(None, "shard-9", "corrupt_record", None, "bad CRC"),)
    assert books.counts == (1, 2, 2) and books.sequences == SMALL_COUNTS
    unsequenced = check_books(TASK, threshold=SMALL_THRESHOLD, **_small_inputs())
    assert unsequenced.sequences == SequenceCounts()


def test_check_books_names_the_least_id_when_several_break_a_rule() -> None:
    # The columns arrive in any order (Beam merges partial accumulators as it likes): the
    # error must not depend on it.
    inputs = _small_inputs()
    inputs["kept"] = [("e2", 2.0, 1, 1), ("e0", 1.0, 1, 1)] + inputs["kept"]
    for kept in (inputs["kept"], inputs["kept"][::-1]):
        with pytest.raises(ValueError, match="episode 'e0' was tokenized but not kept by the filter"):
            check_books(TASK, threshold=SMALL_THRESHOLD, **{**inputs, "kept": kept})


def test_ids_that_differ_only_by_a_trailing_nul_are_two_episodes() -> None:
    returns = [(((0,), "s", 0), "a", 1.0, "s"), (((1,), "s", 1), "a\x00", 2.0, "s")]
    threshold = expert_return([1.0, 2.0])
    books = check_books(TASK, threshold=threshold, returns=returns, decisions=[("a", False, "r"), ("a\x00", True, "r")],
                        kept=[("a\x00", 2.0, 1, 1)], rejects=[])
    assert books.ids_in_order() == ["a", "a\x00"] and books.counts == (1, 1, 0)


def _duplicate_sort_key(books: dict[str, list]) -> None:
    books["returns"].append(books["returns"][0])


def _second_return_of_e0(books: dict[str, list]) -> None:
    books["returns"][0] = (((9,), "shard-0", 9), "e0", 1.0, "shard-0")  # in place of e2's


def _no_threshold(books: dict[str, list]) -> None:
    books["threshold"] = None


def _tokenized_unfiltered(books: dict[str, list]) -> None:
    books["decisions"].pop(3)
    books["returns"] = [row for row in books["returns"] if row[1] != "e3"]
    books["threshold"] = TaskThreshold(n=3, window=1, expert_return=4.0, threshold=3.2, window_start=1, fraction=0.8, cap=1000)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_duplicate_sort_key, "(same order key, file and record): the episode was read twice"),
        (_second_return_of_e0, "episode id 'e0' has two returns (read twice?)"),
        (lambda b: b["returns"].pop(), "the threshold was computed over 4 episodes but 3 returns reached the statistics"),
        (_no_threshold, "4 valid episodes but no threshold"),
        (lambda b: b["decisions"].append(("e2", False, "again")), "episode 'e2' was filtered twice"),
        (lambda b: b["kept"].append(("e1", 4.0, 10, 80)), "episode 'e1' was tokenized twice"),
        (lambda b: b["kept"].append(("e0", 1.0, 1, 8)), "episode 'e0' was tokenized but not kept by the filter"),
        (_tokenized_unfiltered, "episode 'e3' was tokenized but not kept by the filter"),
        (lambda b: b["rejects"].append(("e2", "shard-0", "non_finite", None, "NaN")),
         "episode 'e2' is counted both as rejected and as dropped"),
        (lambda b: b["kept"].pop(1), "1 episode(s) kept by the filter were neither tokenized nor rejected, e.g. 'e1'"),
        (lambda b: b["decisions"].append(("ghost", False, "below")), "episode 'ghost' was filtered but has no pass-1 return"),
        (lambda b: b["decisions"].pop(0), "1 valid episode(s) never reached the filter nor a reject, e.g. 'e0'"),
        (lambda b: b.update(sequences=SequenceCounts(episodes=2, sequences=3, prompted=1, unprompted=2)),
         "sequencing counted 2 episode(s) but 1 were kept"),
        (lambda b: b.update(sequences=SequenceCounts(episodes=1, sequences=4, prompted=1, unprompted=2)),
         "1 prompted + 2 unprompted rows != 4 sequences"),
        (lambda b: b.update(sequences=SequenceCounts(episodes=1, sequences=3, prompted=1, unprompted=2, prompts_unavailable=3)),
         "3 rows without an available prompt but only 2 unprompted rows"),
        (lambda b: b.update(sequences=SequenceCounts(episodes=1, sequences=3, prompted=1, unprompted=2, prompts_unavailable=-1)),
         "-1 rows without an available prompt"),
    ],
)
def test_check_books_rejects_books_that_do_not_balance(mutate: Callable[[dict], None], message: str) -> None:
    books: dict = {"threshold": SMALL_THRESHOLD, "sequences": SMALL_COUNTS, **_small_inputs()}
    check_books(TASK, **books)  # balanced before the change
    mutate(books)
    with pytest.raises(ValueError, match=f"^task {re.escape(str(TASK))}: .*{re.escape(message)}"):
        check_books(TASK, **books)


def test_sequence_counts_add_field_by_field() -> None:
    a = SequenceCounts(episodes=1, sequences=2, prompted=1, unprompted=1, prompts_unavailable=0, tokens=10)
    b = SequenceCounts(episodes=2, sequences=5, prompted=2, unprompted=3, prompts_unavailable=1, tokens=40)
    assert a + b == SequenceCounts(episodes=3, sequences=7, prompted=3, unprompted=4, prompts_unavailable=1, tokens=50)
    assert sum([a, b], start=SequenceCounts()) == a + b
