"""The Read stage of vision-language and text data: WorkItem -> VLRecord, one input file
(or tar shard, or TFDS shard) at a time, lazily (`formats/vl_read.py`).

A file the reader cannot go on with (a broken tar, a Parquet file that does not open) is
one `Reject` naming the file and why (reason `unreadable_record`), and the job goes on;
`--strict` raises instead. Records the reader could read only in part carry their
problems (`VLRecord.problems`) to the tokenizer, which rejects them with their reason, so
every record read is counted once: read = kept + rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from formats.vl_read import read_records
from pipeline.counters import TaskCounters
from pipeline.rejects import REJECTS_TAG, reject_or_raise
from schemas.vl import UNREADABLE_RECORD, FieldMapping
from transforms.episode import Reject, WorkItem

RECORDS = "records"  # main output tag
COUNTER_NAMESPACE = "gato.vl_read"


class ReadVLRecordsFn(beam.DoFn):
    """WorkItem -> VLRecord (main) and Reject (`rejects`); counter `records` per task."""

    def __init__(self, *, kind: str, format: str, mapping: FieldMapping, strict: bool = False) -> None:
        self._kind = kind
        self._format = format
        self._mapping = mapping
        self._strict = strict

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, item: WorkItem) -> Iterator[Any]:
        task = (item.dataset, item.task)
        read = 0
        try:
            for record in read_records(item, kind=self._kind, format=self._format, mapping=self._mapping):
                read += 1
                self._counters.inc(task, "records")
                yield record
        except (ValueError, OSError) as e:
            detail = f"{item.source_file}: unreadable after {read} records: {e}"
            reject = Reject.of_record(item, reason=UNREADABLE_RECORD, detail=detail)
            yield reject_or_raise(reject, strict=self._strict, counters=self._counters, counter="unreadable_files",
                                  error=ValueError(detail), cause=e)


class ReadVLRecords(beam.PTransform):
    """PCollection[WorkItem] -> outputs `records` (VLRecord) and `rejects` (Reject); the
    work items are reshuffled first so that files spread over workers."""

    def __init__(self, *, kind: str, format: str, mapping: FieldMapping, strict: bool = False) -> None:
        super().__init__()
        self._fn = ReadVLRecordsFn(kind=kind, format=format, mapping=mapping, strict=strict)

    def expand(self, items: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            items
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFile" >> beam.ParDo(self._fn).with_outputs(REJECTS_TAG, main=RECORDS)
        )
