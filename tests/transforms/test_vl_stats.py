"""Per-task statistics of vision-language data: exact figures for a hand-made task, the
same summary whatever the merge order, an exact median across the dense and long counts."""

from __future__ import annotations

import dataclasses
import itertools
import pickle

import numpy as np
import pytest

from schemas import output as out
from schemas.vl import CORRUPT_IMAGE, EMPTY_TEXT, KIND_TEXT
from tests.vl_row_fixtures import make_outcome, make_rows, make_unit, scene_image
from transforms.vl_stats import VLTaskBook, merge_books

L = 64
IMAGE_A, IMAGE_B = scene_image(32, seed=1), scene_image(32, seed=2)  # 4 patches each
A0 = make_unit("a", index=0, images=[IMAGE_A], target=[10, 11, 12])  # 4 + 4 tokens, 4 text
A1 = make_unit("a", index=1, images=[IMAGE_A], target=[10, 11, 12, 13, 14])  # 4 + 6, 6 text
B0 = make_unit("b", images=[IMAGE_B], context=[20, 21, 22], target=[30])  # 4 + 5, 5 text, 2 loss
DOC = make_unit("doc", target=list(range(100, 199)), source_key="doc")  # 100 text tokens > L
DOC_ROW_0 = make_unit("doc", target=list(range(100, 164)), end_id=None, source_key="doc")  # 64 tokens
DOC_ROW_1 = make_unit("doc", target=list(range(164, 199)), source_key="doc")  # 35 + E

OUTCOMES = [
    make_outcome("a", [A0, A1], [(EMPTY_TEXT, "captions", "caption 2 is empty")]),
    make_outcome("b", [B0]),
    make_outcome("c", [], [(CORRUPT_IMAGE, "image", "cannot decode")]),
    make_outcome("d", [], [(EMPTY_TEXT, "captions", "caption 0"), (EMPTY_TEXT, "captions", "caption 1")]),
    make_outcome("doc", [DOC], kind=KIND_TEXT),
]
BATCHES = [make_rows([[A0, A1], [B0]], length=L), make_rows([[DOC_ROW_0], [DOC_ROW_1]], length=L, pair_rows=False)]

EXPECTED = {
    out.DATASET: "coco", out.TASK: "coco",
    out.VST_RECORDS_READ: 5, out.VST_RECORDS_KEPT: 3, out.VST_RECORDS_REJECTED: 2,
    out.VST_REJECTED_BY_REASON: {CORRUPT_IMAGE: 1, EMPTY_TEXT: 1},
    out.VST_UNITS_REJECTED_BY_REASON: {EMPTY_TEXT: 1},
    out.VST_UNITS: 4, out.VST_SEQUENCE_LENGTH: L, out.VST_ROWS: 4,
    out.VST_TOKENS: 18 + 9 + 64 + 36, out.VST_TEXT_TOKENS: 4 + 6 + 5 + 100, out.VST_IMAGE_TOKENS: 12,
    out.VST_LOSS_TOKENS: 4 + 6 + 2 + 100,
    out.VST_PADDING_TOKENS: 4 * L - 127, out.VST_PADDING_FRACTION: 129 / 256,
    out.VST_UNITS_PER_ROW_MEAN: 1.25, out.VST_UNITS_PER_ROW_HISTOGRAM: [3, 1, 0, 0, 0],
    out.VST_UNIT_TEXT_TOKENS_MIN: 4, out.VST_UNIT_TEXT_TOKENS_MEDIAN: 5.5, out.VST_UNIT_TEXT_TOKENS_MAX: 100,
}


def _book(outcomes=OUTCOMES, batches=BATCHES) -> VLTaskBook:
    book = VLTaskBook(sequence_length=L)
    for outcome in outcomes:
        book.add_outcome(outcome)
    for batch in batches:
        book.add_rows(batch)
    return book


def test_a_hand_made_task_gives_exact_figures_in_schema_order() -> None:
    summary = _book().summary("coco", "coco")
    assert summary == EXPECTED
    assert list(summary) == out.VL_STATS_SCHEMA.names


def test_read_is_kept_plus_rejected_and_a_record_with_a_lost_pair_is_kept() -> None:
    book = VLTaskBook(sequence_length=L)
    book.add_outcome(OUTCOMES[0])
    assert (book.records_read, book.records_kept, book.records_rejected) == (1, 1, 0)
    assert book.units_rejected_by_reason == {EMPTY_TEXT: 1} and book.rejected_by_reason == {}


def test_the_summary_does_not_depend_on_how_inputs_are_split_and_merged() -> None:
    inputs = [("outcome", o) for o in OUTCOMES] + [("rows", b) for b in BATCHES]
    for order in ([0, 1, 2, 3, 4, 5, 6], [6, 4, 2, 0, 5, 3, 1], [3, 6, 1, 5, 0, 2, 4]):
        parts = [VLTaskBook(sequence_length=L) for _ in range(3)]
        for i, at in enumerate(order):
            kind, item = inputs[at]
            (parts[i % 3].add_outcome if kind == "outcome" else parts[i % 3].add_rows)(item)
        for permutation in itertools.permutations(range(3)):
            copies = [pickle.loads(pickle.dumps(parts[i])) for i in permutation]  # as Beam ships them
            assert merge_books(copies, sequence_length=L).summary("coco", "coco") == EXPECTED


def test_merge_leaves_the_other_book_unchanged() -> None:
    other = _book(OUTCOMES[4:], [])
    before = pickle.dumps(other)
    _book(OUTCOMES[:4], BATCHES).merge(other)
    assert pickle.dumps(other) == before


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([7], (7, 7.0, 7)),
        ([3, 1, 2], (1, 2.0, 3)),
        ([4, 1, 3, 2], (1, 2.5, 4)),
        ([L, L + 1], (L, L + 0.5, L + 1)),  # one dense, one long
        ([500, 65, 500, 0, 65], (0, 65.0, 500)),
        ([1000, 900, 5], (5, 900.0, 1000)),
    ],
)
def test_text_tokens_per_unit_are_exact_across_dense_and_long_counts(counts, expected) -> None:
    books = []
    for i, n in enumerate(counts):
        unit = dataclasses.replace(A0, text_tokens=n)
        book = VLTaskBook(sequence_length=L)
        book.add_outcome(make_outcome(f"r{i}", [unit]))
        books.append(book)
    summary = merge_books(books, sequence_length=L).summary("t", "t")
    got = tuple(summary[k] for k in (out.VST_UNIT_TEXT_TOKENS_MIN, out.VST_UNIT_TEXT_TOKENS_MEDIAN,
                                     out.VST_UNIT_TEXT_TOKENS_MAX))
    assert got == expected


def test_an_empty_book_has_null_statistics_and_zero_counts() -> None:
    summary = merge_books([], sequence_length=L).summary("t", "t")
    assert summary[out.VST_RECORDS_READ] == 0 and summary[out.VST_ROWS] == 0
    assert summary[out.VST_PADDING_FRACTION] is None and summary[out.VST_UNITS_PER_ROW_MEAN] is None
    assert summary[out.VST_UNIT_TEXT_TOKENS_MEDIAN] is None and summary[out.VST_UNITS_PER_ROW_HISTOGRAM] == [0] * 5


def test_a_record_neither_kept_nor_rejected_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"f.parquet: record 'x' \(index 0\) has no unit and no reject reason"):
        VLTaskBook(sequence_length=L).add_outcome(make_outcome("x", []))


def test_rows_of_another_length_or_without_source_keys_are_errors() -> None:
    book = VLTaskBook(sequence_length=L + 1)
    with pytest.raises(ValueError, match="have 64 tokens, the book counts rows of 65"):
        book.add_rows(BATCHES[0])
    with pytest.raises(ValueError, match="no source keys"):
        VLTaskBook(sequence_length=L).add_rows(dataclasses.replace(BATCHES[0], source_keys=None))
    six = make_rows([[A0] * 6], length=L)
    with pytest.raises(ValueError, match=r"\[6\] units per row, expected 1..5"):
        VLTaskBook(sequence_length=L).add_rows(six)
    with pytest.raises(ValueError, match="sequence lengths 64 and 65"):
        VLTaskBook(sequence_length=L).merge(book)
