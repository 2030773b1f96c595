"""The Read stage of vision-language and text data: WorkItem -> VLRecord, one input file
(or tar shard, or TFDS shard) at a time, lazily (`formats/vl_read.py`).

Readers never drop an entry: what they cannot read in part or in full is a record with
its problems (`VLRecord.problems`), which the tokenizer rejects with their reason. A file
the reader cannot go on with (a broken tar, a Parquet file that does not open) ends in
one more such record, keyed `<file>:<index>` and saying why (`unreadable_record`), so it
is rejected (or stops the job under `--strict`) and counted like every other record:
read = kept + rejected.

Records travel in tuples, a file's records in file order, so that the stages after the
read run once per tuple, not per record: for the pair kinds the whole file is one tuple
(pairs are packed per file, spec section 8: no shuffle of the images' patches is needed,
where a GroupByKey was most of the caption job's own cost); documents go
`DOCUMENTS_PER_ELEMENT` at a time (a text corpus file can be larger than memory).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import apache_beam as beam

from formats.vl_fields import unreadable_record
from formats.vl_read import read_records
from pipeline.counters import TaskCounters
from pipeline.runner import freeze_worker_heap
from schemas.vl import FieldMapping
from transforms.episode import WorkItem
from transforms.vl_types import VLRecord

COUNTER_NAMESPACE = "gato.vl_read"
DOCUMENTS_PER_ELEMENT = 64


class ReadVLRecordsFn(beam.DoFn):
    """WorkItem -> tuples of its records in file order, up to `records_per_element` a tuple
    (None: the whole file in one); counters `records` and `unreadable_files` per task."""

    def __init__(self, *, kind: str, format: str, mapping: FieldMapping, records_per_element: int | None) -> None:
        if records_per_element is not None and records_per_element < 1:
            raise ValueError(f"records per element must be >= 1 or None, got {records_per_element}")
        self._kind = kind
        self._format = format
        self._mapping = mapping
        self._per_element = records_per_element

    def setup(self) -> None:
        freeze_worker_heap()  # the job's first stage in a worker (pipeline/runner.py)
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, item: WorkItem) -> Iterator[tuple[VLRecord, ...]]:
        records = self._records(item)
        while chunk := tuple(itertools.islice(records, self._per_element)):
            yield chunk

    def _records(self, item: WorkItem) -> Iterator[VLRecord]:
        task = (item.dataset, item.task)
        read = 0
        try:
            for record in read_records(item, kind=self._kind, format=self._format, mapping=self._mapping):
                read += 1
                self._counters.inc(task, "records")
                yield record
        except (ValueError, OSError) as e:
            self._counters.inc(task, "unreadable_files")
            yield unreadable_record(
                item, kind=self._kind, index=read, detail=f"{item.source_file}: unreadable after {read} records: {e}"
            )


class ReadVLRecords(beam.PTransform):
    """PCollection[WorkItem] -> PCollection[tuple[VLRecord, ...]] (`ReadVLRecordsFn`); the
    work items are reshuffled first so that files spread over workers."""

    def __init__(self, *, kind: str, format: str, mapping: FieldMapping, records_per_element: int | None) -> None:
        super().__init__()
        self._fn = ReadVLRecordsFn(kind=kind, format=format, mapping=mapping, records_per_element=records_per_element)

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        return items | "SpreadFiles" >> beam.Reshuffle() | "ReadFile" >> beam.ParDo(self._fn)
