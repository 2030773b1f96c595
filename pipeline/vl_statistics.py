"""The statistics stage of vision-language and text data (spec section 8, "Stats per
task"): record outcomes and written rows -> stats/stats.{parquet,json} and report.html.

Each record's outcome is reduced to its counts (`OutcomeCounts`) and each batch of rows to
a book where they are made, so only small parts are shuffled, never patches; they are
combined per task into `transforms.vl_stats.VLTaskBook`s, gathered once,
and the files written with a few decoded rows per task read back from the finalized
shards (`formats.vl_stats_files.sample_rows`), so the report shows what was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apache_beam as beam

from audit.vl_report import write_vl_stats
from formats.files import join_url
from formats.vl_stats_files import sample_rows
from schemas.output import S_PATH
from transforms.episode import TaskKey
from transforms.sequence import SequenceBatch
from schemas.vocab import VocabLayout
from transforms.vl_stats import VLTaskBook, merge_books
from transforms.vl_types import OutcomeCounts

# Keys of the dict of PCollections `VLStatistics` takes.
OUTCOMES = "outcomes"  # tuples of the RecordOutcomes of every record read
ROWS = "rows"  # (EpisodeKey, SequenceBatch) as written
SHARDS = "shards"  # one element: the manifest entries of the sequences shards


class CombineBooks(beam.CombineFn):
    """What one task's records and rows came to -> its VLTaskBook (merge order does not
    matter). Inputs: OutcomeCounts of a record, or the VLTaskBook of a batch of rows."""

    def __init__(self, *, sequence_length: int) -> None:
        self._length = sequence_length

    def create_accumulator(self) -> VLTaskBook:
        return VLTaskBook(self._length)

    def add_input(self, book: VLTaskBook, element: OutcomeCounts | VLTaskBook) -> VLTaskBook:
        if isinstance(element, VLTaskBook):
            return book.merge(element)
        book.add_outcome(element)
        return book

    def merge_accumulators(self, books: Iterable[VLTaskBook]) -> VLTaskBook:
        return merge_books(books, sequence_length=self._length)

    def extract_output(self, book: VLTaskBook) -> VLTaskBook:
        return book


def rows_book(batch: SequenceBatch, *, sequence_length: int) -> VLTaskBook:
    """The book of one batch of rows (so only books, never rows, reach the combine)."""
    book = VLTaskBook(sequence_length)
    book.add_rows(batch)
    return book


def _write(
    _: None,
    *,
    books: Sequence[tuple[TaskKey, VLTaskBook]],
    shards: Sequence[Mapping[str, Any]],
    output_dir: str,
    text_model: str | None,
    layout: VocabLayout,
) -> dict[str, str]:
    summaries = [book.summary(dataset, task) for (dataset, task), book in sorted(books, key=lambda b: b[0])]
    paths = sorted(join_url(output_dir, s[S_PATH]) for s in shards)
    return write_vl_stats(output_dir, summaries, report_rows=sample_rows(paths), text_model=text_model, layout=layout)


class VLStatistics(beam.PTransform):
    """{OUTCOMES, ROWS, SHARDS} -> one element: the manifest's stats entry."""

    def __init__(self, output_dir: str, *, text_model: str | None, sequence_length: int, layout: VocabLayout) -> None:
        super().__init__()
        self._output_dir = output_dir
        self._text_model = text_model
        self._length = sequence_length
        self._layout = layout

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> beam.PCollection:
        # Records and rows are reduced to their counts where they are made: only these small
        # parts (never a record's or a row's patches) are shuffled, whatever the runner fuses.
        counts = inputs[OUTCOMES] | "CountOutcomes" >> beam.FlatMap(
            lambda outcomes: [((o.record.dataset, o.record.task), OutcomeCounts.of(o)) for o in outcomes]
        )
        row_books = inputs[ROWS] | "BookRows" >> beam.Map(
            lambda row, length: (row[0].task_key, rows_book(row[1], sequence_length=length)), length=self._length
        )
        books = (
            (counts, row_books)
            | "Together" >> beam.Flatten()
            | "BookPerTask" >> beam.CombinePerKey(CombineBooks(sequence_length=self._length))
        )
        return (
            inputs[SHARDS].pipeline
            | "StatsTrigger" >> beam.Create([None])
            | "WriteStats" >> beam.Map(
                _write,
                books=beam.pvalue.AsList(books),
                shards=beam.pvalue.AsSingleton(inputs[SHARDS]),
                output_dir=self._output_dir,
                text_model=self._text_model,
                layout=self._layout,
            )
        )


