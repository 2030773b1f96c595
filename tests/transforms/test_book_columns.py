"""transforms/book_columns.py: one task's per-episode rows as compact columns; merging
partial columns in any order gives the same books; a million episodes stay small."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from tests.transforms.test_books import TASK, book_rows, return_rows
from transforms.book_columns import DecisionColumns, KeptColumns, ReturnColumns, StringColumn, key_text, text_keys
from transforms.books import check_columns


def test_string_column_keeps_any_text_and_its_keys_join_exactly() -> None:
    texts = ["e1", "", "é/ü", "a", "a\x00", "a\x00\x00", "🙂" * 3, "e1"]
    column = StringColumn()
    for text in texts:
        column.append(text)
    assert [column.text(i) for i in range(len(column))] == texts
    keys = column.keys()
    assert [key_text(k) for k in keys] == texts
    unique, inverse = np.unique(keys, return_inverse=True)
    assert len(unique) == len(set(texts))  # "a", "a\x00" and "a\x00\x00" stay three ids
    assert [key_text(unique[c]) for c in inverse] == texts
    assert text_keys(texts).tolist() == keys.tolist()
    assert StringColumn().keys().shape == (0,)


def test_merged_columns_equal_columns_built_in_one_go() -> None:
    values = [float(v % 7) for v in range(50)]
    threshold, decisions, kept, rejects = book_rows(values)
    returns = return_rows(values)

    def built(parts: int, seed: int) -> tuple:
        rng = random.Random(seed)
        columns = []
        for kind, rows in ((ReturnColumns, returns), (DecisionColumns, decisions), (KeptColumns, kept)):
            rows = rows[:]
            rng.shuffle(rows)
            chunks = [kind.of(rows[i::parts]) for i in range(parts)]
            merged = chunks[0]
            for chunk in chunks[1:]:
                merged.merge(pickle.loads(pickle.dumps(chunk)))  # as Beam ships partial accumulators
            columns.append(merged)
        return tuple(columns)

    books = [check_columns(TASK, threshold=threshold, returns=r, decisions=d, kept=k, rejects=rejects)
             for r, d, k in (built(1, 0), built(3, 1), built(7, 2))]
    for other in books[1:]:
        assert other.ids_in_order() == books[0].ids_in_order() == [f"e{i}" for i in range(50)]
        assert other.values.tolist() == books[0].values.tolist()
        assert other.outcome.tolist() == books[0].outcome.tolist()
        assert [other.reasons[i] for i in other.reason] == [books[0].reasons[i] for i in books[0].reason]
        assert sorted(other.kept_values.tolist()) == sorted(books[0].kept_values.tolist())
        assert other.counts == books[0].counts


def test_decision_reasons_are_stored_once_and_remapped_on_merge() -> None:
    one, two = DecisionColumns.of([("a", True, "kept"), ("b", False, "dropped")]), DecisionColumns.of(
        [("c", False, "dropped"), ("d", False, "other")]
    )
    one.merge(two)
    assert one.reasons.words == ["kept", "dropped", "other"]
    assert [one.reasons.words[c] for c in one.reason_codes] == ["kept", "dropped", "dropped", "other"]
    assert list(one.kept) == [1, 0, 0, 0]


def test_a_million_episodes_of_one_task_pickle_small() -> None:
    # What the combiner ships per task: ~55 bytes a return pickled (its order key tuple is
    # most of it), ~25 a decision, ~45 a kept episode; the row tuples, pickled one by one
    # as a grouping ships them, take ~280 bytes for the three.
    n = 1_000_000
    returns, decisions, kept = ReturnColumns(), DecisionColumns(), KeptColumns()
    files = [f"gs://bucket/rlu_atari/Pong_run_1/shard-{s:05d}" for s in range(100)]
    for i in range(n):
        episode_id = f"{i // 50}/{i}"
        returns.add(((i // 50, i), files[i % 100], i // 100), episode_id, float(i % 21))
        decisions.add(episode_id, i % 3 == 0, "at_or_above_threshold" if i % 3 == 0 else "below_threshold")
        kept.add(episode_id, float(i % 21), 10, 400)
    sizes = {name: len(pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL)) / n
             for name, c in (("returns", returns), ("decisions", decisions), ("kept", kept))}
    assert sizes["returns"] < 60 and sizes["decisions"] < 30 and sizes["kept"] < 50, sizes


def test_a_return_row_must_carry_a_whole_sort_key() -> None:
    with pytest.raises(ValueError, match=r"episode '3': sort key \(3,\) is not \(order key, source file, record\)"):
        ReturnColumns.of([((3,), "3", 1.0, "f")])
    with pytest.raises(ValueError, match="episode '3': source file 'g' is not its sort key's 'f'"):
        ReturnColumns.of([(((3,), "f", 0), "3", 1.0, "g")])


def test_keys_of_more_strings_than_one_slice() -> None:
    texts = [f"id-{i}" * (1 + i % 3) for i in range(150_000)]  # past two slices of 65,536
    column = StringColumn()
    for text in texts:
        column.append(text)
    keys = column.keys()
    assert keys.dtype.itemsize == max(len(t) for t in texts) + 1
    assert [key_text(k) for k in keys] == texts
