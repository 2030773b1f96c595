"""The Read stage of vision-language and text data: WorkItem -> VLRecord, one input file
(or tar shard, or TFDS shard) at a time, lazily (`formats/vl_read.py`).

Readers never drop an entry: what they cannot read in part or in full is a record with
its problems (`VLRecord.problems`), which the tokenizer rejects with their reason. A file
the reader cannot go on with (a broken tar, a Parquet file that does not open) ends in
one more such record, keyed `<file>:<index>` and saying why (`unreadable_record`), so it
is rejected (or stops the job under `--strict`) and counted like every other record:
read = kept + rejected.

Pairs are packed per file (spec section 8), so for the pair kinds (`whole_files`) a file's
records travel as one element, a tuple in file order: the file's packing then needs no
shuffle of its images' patches (a GroupByKey was most of the caption job's own cost).
Documents are streamed one record at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from formats.vl_fields import unreadable_record
from formats.vl_read import read_records
from pipeline.counters import TaskCounters
from schemas.vl import FieldMapping
from transforms.episode import WorkItem
from transforms.vl_types import VLRecord

COUNTER_NAMESPACE = "gato.vl_read"


class ReadVLRecordsFn(beam.DoFn):
    """WorkItem -> VLRecord, or (`whole_files`) the tuple of a file's records when it has
    any; counters `records` and `unreadable_files` per task."""

    def __init__(self, *, kind: str, format: str, mapping: FieldMapping, whole_files: bool = False) -> None:
        self._kind = kind
        self._format = format
        self._mapping = mapping
        self._whole_files = whole_files

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, item: WorkItem) -> Iterator[VLRecord | tuple[VLRecord, ...]]:
        records = self._records(item)
        if not self._whole_files:
            yield from records
            return
        whole = tuple(records)
        if whole:
            yield whole

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
    """PCollection[WorkItem] -> PCollection[VLRecord] (or, `whole_files`, of each file's
    records as one tuple); the work items are reshuffled first so that files spread over workers."""

    def __init__(self, *, kind: str, format: str, mapping: FieldMapping, whole_files: bool = False) -> None:
        super().__init__()
        self._fn = ReadVLRecordsFn(kind=kind, format=format, mapping=mapping, whole_files=whole_files)

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        return items | "SpreadFiles" >> beam.Reshuffle() | "ReadFile" >> beam.ParDo(self._fn)
