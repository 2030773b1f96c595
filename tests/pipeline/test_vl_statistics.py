"""pipeline/vl_statistics.py: the CombineFn gives the same book whatever the split and merge
order, and the stage writes stats.json (read = kept + rejected) and a report showing the
rows of the written shards."""

from __future__ import annotations

import json
import pathlib
import pickle

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from formats.parquet_shards import sequence_record_batch, shard_path
from pipeline.vl_statistics import OUTCOMES, ROWS, SHARDS, CombineBooks, VLStatistics, rows_book
from transforms.vl_types import OutcomeCounts
from schemas import output as out
from schemas.vocab import GATO
from tests.pipeline.pipeline_fixtures import RUNNER
from tests.transforms.test_vl_stats import BATCHES, EXPECTED, L
from tests.transforms.test_vl_stats import OUTCOMES as RECORD_OUTCOMES
from transforms.episode import EpisodeKey

# The hand-made outcomes and rows are of dataset "d", task "d".
EXPECTED_D = {**EXPECTED, out.DATASET: "d", out.TASK: "d"}
STATS_ENTRY = {out.M_STATS_PARQUET: out.STATS_PARQUET_FILE, out.M_STATS_JSON: out.STATS_JSON_FILE,
               out.M_STATS_REPORT: out.REPORT_FILE}


def _key(batch_index: int) -> EpisodeKey:
    return EpisodeKey("d", "d", BATCHES[batch_index].episode_id, (), "f.parquet", 0, batch_index)


def test_combine_books_gives_the_same_book_whatever_the_split_and_merge_order() -> None:
    fn = CombineBooks(sequence_length=L)
    # What the stage hands the combine: each record's counts, each batch of rows as its book.
    inputs = [*map(OutcomeCounts.of, RECORD_OUTCOMES), *(rows_book(b, sequence_length=L) for b in BATCHES)]
    for split in ([inputs], [inputs[:3], inputs[3:]], [inputs[::3], inputs[1::3], inputs[2::3]]):
        accumulators = []
        for part in split:
            book = fn.create_accumulator()
            for element in reversed(part):
                book = fn.add_input(book, element)
            accumulators.append(pickle.dumps(book))  # as Beam ships them
        for ordered in (accumulators, accumulators[::-1]):
            # Fresh copies each time: merge_accumulators may add into its first accumulator.
            merged = fn.merge_accumulators([pickle.loads(a) for a in ordered])
            assert fn.extract_output(merged).summary("d", "d") == EXPECTED_D
    assert fn.extract_output(fn.create_accumulator()).summary("d", "d")[out.VST_RECORDS_READ] == 0


def _run(tmp_path: pathlib.Path, shards: list[dict]) -> None:
    with TestPipeline(runner=RUNNER) as p:
        entry = {
            OUTCOMES: p | "Outcomes" >> beam.Create([tuple(RECORD_OUTCOMES)]),
            ROWS: p | "Rows" >> beam.Create([(_key(i), b) for i, b in enumerate(BATCHES)]),
            SHARDS: p | "Shards" >> beam.Create([shards]),
        } | VLStatistics(str(tmp_path), text_model="bundled:gato_text.model", sequence_length=L, layout=GATO)
        assert_that(entry, equal_to([STATS_ENTRY]))


def _stats_json(tmp_path: pathlib.Path) -> list[dict]:
    return json.loads((tmp_path / out.STATS_JSON_FILE).read_text())[out.SJ_TASKS]


def test_stats_files_and_report_from_outcomes_rows_and_a_written_shard(tmp_path: pathlib.Path) -> None:
    path = shard_path(out.SEQUENCES_DIR, "d", "d", 0, 0)
    (tmp_path / path).parent.mkdir(parents=True)
    batch = sequence_record_batch(_key(0), BATCHES[0], out.VL_SEQUENCE_SCHEMA)
    pq.write_table(pa.Table.from_batches([batch]), tmp_path / path)
    _run(tmp_path, [{out.S_PATH: path}])
    (task,) = _stats_json(tmp_path)
    assert task == {**EXPECTED_D, out.VST_REJECTED_BY_REASON: dict(EXPECTED_D[out.VST_REJECTED_BY_REASON])}
    assert task[out.VST_RECORDS_READ] == task[out.VST_RECORDS_KEPT] + task[out.VST_RECORDS_REJECTED] == 5
    assert pq.read_table(tmp_path / out.STATS_PARQUET_FILE).num_rows == 1
    report = (tmp_path / out.REPORT_FILE).read_text()
    # The shard's two rows are shown, units with their images: a#0 and a#1 share a row, b#0 is alone.
    assert report.count("<img alt=") == 3
    assert 'alt="image 0 of a#1"' in report and 'alt="image 0 of b#0"' in report


def test_no_shards_still_gives_the_stats_and_a_report_without_rows(tmp_path: pathlib.Path) -> None:
    _run(tmp_path, [])
    (task,) = _stats_json(tmp_path)
    assert (task[out.VST_RECORDS_READ], task[out.VST_RECORDS_KEPT], task[out.VST_RECORDS_REJECTED]) == (5, 3, 2)
    assert "<img alt=" not in (tmp_path / out.REPORT_FILE).read_text()

