"""pipeline/sequence_vl_units.py: pairs packed per input file (a file's outcomes are one
element; never mixing files, the same rows whatever order its outcomes are in), documents cut one by one, rejected
records give no rows, and each batch's EpisodeKey names its file and first unit."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counters import counter_name
from pipeline.sequence_vl_units import COUNTER_NAMESPACE, SequenceVLUnits
from schemas.vl import EMPTY_TEXT, KIND_CAPTION, KIND_TEXT
from schemas.vocab import GATO
from tests.pipeline.pipeline_fixtures import RUNNER, committed_counters
from tests.transforms.vl_fixtures import make_unit, record
from transforms.episode import EpisodeKey
from transforms.sequence import SequenceBatch
from transforms.vl_sequence import pack_pairs
from transforms.vl_types import RecordOutcome

SEED = 5
LENGTH = 12  # three pairs of 4 tokens a row
TASK = ("d", "d")


def _outcome(kind: str, key: str, source_file: str, work_item: int, index: int, units: int, *,
             text: int = 4) -> RecordOutcome:
    """A record's outcome with `units` units of `text` tokens (none: rejected, EMPTY_TEXT)."""
    rec = dataclasses.replace(record(kind, key=key), source_file=source_file, work_item=work_item,
                              index_in_file=index)
    made = tuple(make_unit(key, i, patches=0, text=text) for i in range(units))
    if kind == KIND_TEXT:  # a document's source key is its record key
        made = tuple(dataclasses.replace(u, source_key=key) for u in made)
    return RecordOutcome(rec, made, () if units else ((EMPTY_TEXT, "captions", "no captions"),))


def _pair_outcomes() -> list[RecordOutcome]:
    return [
        _outcome(KIND_CAPTION, "a1", "a.parquet", 0, 0, 2),
        _outcome(KIND_CAPTION, "a2", "a.parquet", 0, 1, 3),
        _outcome(KIND_CAPTION, "a3", "a.parquet", 0, 2, 0),  # rejected: no rows
        _outcome(KIND_CAPTION, "b1", "b.parquet", 1, 0, 4),
    ]


def _summary(key: EpisodeKey, batch: SequenceBatch) -> tuple:
    return ((key.dataset, key.task, key.work_item, key.source_file, key.episode_id, key.index_in_file),
            batch.row_episode_ids, batch.source_keys, batch.tokens.tolist())


def _expected_file(outcomes: list[RecordOutcome], work_item: int, source_file: str) -> tuple:
    """The batch of one file: `pack_pairs` of that file's units alone."""
    units = [u for o in outcomes if o.record.source_file == source_file for u in o.units]
    batch = pack_pairs(units, seed=SEED, dataset="d", sequence_length=LENGTH, layout=GATO)
    key = EpisodeKey("d", "d", batch.row_episode_ids[0], (), source_file, 0, work_item)
    return _summary(key, batch)


def test_pairs_packed_per_file_whatever_the_order_of_its_outcomes() -> None:
    outcomes = _pair_outcomes()
    expected = [_expected_file(outcomes, 0, "a.parquet"), _expected_file(outcomes, 1, "b.parquet")]
    # Sanity of the expectation itself: 5 units of a (3 + 2 rows) and 4 of b (3 + 1), each file's own.
    (_, a_ids, a_keys, _), (_, b_ids, b_keys, _) = expected
    assert [len(k) for k in a_keys] == [3, 2] and [len(k) for k in b_keys] == [3, 1]
    assert all(k.startswith("a") for row in a_keys for k in row)
    assert all(k.startswith("b") for row in b_keys for k in row)
    assert set(a_ids) <= {"a1", "a2"} and set(b_ids) == {"b1"}
    # Each file's outcomes arrive as one tuple (read_vl_records' whole files), in any order.
    for order, name in ((outcomes, "Forward"), (outcomes[::-1], "Reversed")):
        files = [tuple(o for o in order if o.record.source_file == f) for f in ("a.parquet", "b.parquet")]
        p = TestPipeline(runner=RUNNER)
        rows = p | beam.Create(files, reshuffle=False) | SequenceVLUnits(
            kind=KIND_CAPTION, seed=SEED, sequence_length=LENGTH, layout=GATO
        )
        assert_that(rows | beam.MapTuple(_summary), equal_to(expected), label=name)
        result = p.run()
        result.wait_until_finish()
        assert committed_counters(result, COUNTER_NAMESPACE) == {counter_name(TASK, "rows"): 4}


def test_documents_cut_one_by_one_and_a_rejected_document_gives_no_rows() -> None:
    outcomes = [
        _outcome(KIND_TEXT, "doc1", "c4.jsonl", 0, 0, 1, text=30),  # 12 + 12 + 6: three rows
        _outcome(KIND_TEXT, "bad", "c4.jsonl", 0, 1, 0),
        _outcome(KIND_TEXT, "doc2", "c4.jsonl", 0, 2, 1, text=5),  # one padded row
    ]
    p = TestPipeline(runner=RUNNER)
    rows = p | beam.Create([(o,) for o in outcomes]) | SequenceVLUnits(
        kind=KIND_TEXT, seed=SEED, sequence_length=LENGTH, layout=GATO
    )
    assert_that(
        rows | beam.MapTuple(lambda k, b: (k.episode_id, k.source_file, k.index_in_file, k.work_item,
                                           b.row_episode_ids, b.source_keys, b.num_tokens.tolist())),
        equal_to([
            ("doc1", "c4.jsonl", 0, 0, ("doc1",) * 3, (("doc1",),) * 3, [12, 12, 6]),
            ("doc2", "c4.jsonl", 2, 0, ("doc2",), (("doc2",),), [5]),
        ]),
    )
    result = p.run()
    result.wait_until_finish()
    assert committed_counters(result, COUNTER_NAMESPACE) == {counter_name(TASK, "rows"): 4}


def test_a_tuple_of_documents_gives_one_batch_of_their_rows_in_order() -> None:
    outcomes = (
        _outcome(KIND_TEXT, "doc1", "c4.jsonl", 0, 0, 1, text=30),
        _outcome(KIND_TEXT, "bad", "c4.jsonl", 0, 1, 0),
        _outcome(KIND_TEXT, "doc2", "c4.jsonl", 0, 2, 1, text=5),
    )
    with TestPipeline(runner=RUNNER) as p:
        rows = p | beam.Create([outcomes]) | SequenceVLUnits(
            kind=KIND_TEXT, seed=SEED, sequence_length=LENGTH, layout=GATO
        )
        assert_that(
            rows | beam.MapTuple(lambda k, b: (k.episode_id, k.index_in_file, b.row_episode_ids,
                                               b.sequence_index.tolist(), b.num_tokens.tolist())),
            equal_to([("doc1", 0, ("doc1",) * 3 + ("doc2",), [0, 1, 2, 0], [12, 12, 6, 5])]),
        )
