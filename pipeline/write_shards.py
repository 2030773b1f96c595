"""Write sequences and rejects as Parquet shards, then move them into place (spec section 6).

Layout (see `schemas/output.py`):
`sequences/<dataset>/<task>/part-<work item:05d>-<n:03d>.parquet`, rejects likewise under
`rejects/`. Names pass through `formats.paths.safe_component` and `path_under` only.

Determinism: the rows of one (dataset, task, work item) arrive in input order in one
bundle (the per-episode chain is fused, one work item is one element upstream), and
shard and row-group boundaries depend only on row counts and Arrow sizes, so the same
input gives byte-identical files whatever the runner. Files carry no timestamps or ids.

Atomicity: paths are relative to `WriteOptions.output_dir`, which in a job is the run's
staging directory `<output_dir>/_staging/<run id>` (`pipeline/job.py`), so a shard's path
names the run that wrote it. `WriteShards` writes to `_tmp/<kind>/<attempt uuid>/...` and emits a
`ShardEntry` per closed shard, with the bytes and sha256 the writer measured while writing.
`FinalizeShards` groups the entries by final path (the barrier: only entries of committed
bundles reach it; a path named twice is an error), moves each shard into its final name as
its own element, in parallel, gathers only the small manifest entries, and then deletes
`_tmp/<kind>`, which removes the orphans of failed attempts. No shard is read again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from formats.output_dir import move_shard, remove_temporaries, written_twice_error
from formats.parquet_shards import (
    ShardEntry,
    ShardWriter,
    WriteOptions,
    reject_sort_key,
    rejects_record_batch,
    sequence_record_batch,
)
from schemas.output import REJECTS_DIR, REJECTS_SCHEMA, S_PATH, SEQUENCES_DIR
from transforms.episode import EpisodeKey, Reject, TaskKey
from transforms.sequence import SequenceBatch


class WriteShards(beam.DoFn):
    """(EpisodeKey, SequenceBatch) -> ShardEntry: one shard stream per (dataset, task, work item).

    Streams stay open while their work item's rows arrive and close when the next work
    item starts or at `finish_bundle`, so a work item's rows form consecutive shards. A
    work item seen again later would reuse shard names: `FinalizeShards` refuses that.
    Temporary names are unique per bundle attempt.
    """

    def __init__(self, options: WriteOptions, schema: pa.Schema) -> None:
        self._options = options
        self._schema = schema
        self._writers: dict[tuple[str, str, int], ShardWriter] = {}
        self._attempt = ""

    def start_bundle(self) -> None:
        self._attempt = uuid.uuid4().hex
        self._writers = {}

    def process(self, element: tuple[EpisodeKey, SequenceBatch]) -> Iterator[ShardEntry]:
        key, batch = element
        stream = (key.dataset, key.task, key.work_item)
        # A work item's rows are contiguous: when the next one starts, the streams of the
        # previous ones are complete, so close them and keep few files open.
        for done in sorted(s for s in self._writers if s[2] != key.work_item):
            yield from self._writers.pop(done).close()
        writer = self._writers.get(stream)
        if writer is None:
            writer = self._writers[stream] = ShardWriter(
                kind=SEQUENCES_DIR, dataset=key.dataset, task=key.task, work_item=key.work_item,
                schema=self._schema, options=self._options, attempt=self._attempt,
            )
        yield from writer.write(sequence_record_batch(key, batch, self._schema))

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for stream in sorted(self._writers):
            for entry in self._writers[stream].close():
                yield WindowedValue(entry, MIN_TIMESTAMP, [GlobalWindow()])
        self._writers = {}


class _WriteTaskRejects(beam.DoFn):
    def __init__(self, options: WriteOptions) -> None:
        self._options = options

    def process(self, element: tuple[TaskKey, Iterable[Reject]]) -> Iterator[ShardEntry]:
        (dataset, task), rejects = element
        writer = ShardWriter(
            kind=REJECTS_DIR, dataset=dataset, task=task, work_item=0, schema=REJECTS_SCHEMA,
            options=self._options, attempt=uuid.uuid4().hex,
        )
        yield from writer.write(rejects_record_batch(sorted(rejects, key=reject_sort_key)))
        yield from writer.close()


class WriteRejects(beam.PTransform):
    """Reject -> ShardEntry: per task, its rejects sorted (`reject_sort_key`) into shards.

    Rejects are small (no arrays), so grouping them per task is cheap.
    """

    def __init__(self, options: WriteOptions) -> None:
        super().__init__()
        self._options = options

    def expand(self, rejects: beam.PCollection) -> beam.PCollection:
        return (
            rejects
            | "KeyByTask" >> beam.Map(lambda r: ((r.dataset, r.task), r))
            | "GroupByTask" >> beam.GroupByKey()
            | "WriteTaskRejects" >> beam.ParDo(_WriteTaskRejects(self._options))
        )


class _MoveShardFn(beam.DoFn):
    """(final path, its entries) -> the shard's manifest entry, once it is in place.

    Idempotent (`move_shard`), so a retried bundle moves nothing twice.
    """

    def __init__(self, output_dir: str) -> None:
        self._output_dir = output_dir

    def process(self, element: tuple[str, Iterable[ShardEntry]]) -> Iterator[dict[str, Any]]:
        path, entries = element
        entries = list(entries)
        if len(entries) > 1:
            raise written_twice_error([path])
        yield move_shard(self._output_dir, entries[0])


def _remove_temporaries(entries: list[dict[str, Any]], *, output_dir: str, kind: str) -> list[dict[str, Any]]:
    """After every move: `_tmp/<kind>` goes; the entries sorted by path for the manifest."""
    remove_temporaries(output_dir, kind=kind)
    return sorted(entries, key=lambda e: e[S_PATH])


class FinalizeShards(beam.PTransform):
    """ShardEntry -> one element: the manifest entries of every `kind` shard, sorted by path.

    Grouping by final path is the barrier (it fires once every write bundle has committed)
    and spreads the moves: one element per shard. Only the small manifest entries are
    gathered; `_tmp/<kind>` is removed after every move.
    """

    def __init__(self, output_dir: str, *, kind: str) -> None:
        super().__init__()
        self._output_dir = output_dir
        self._kind = kind

    def expand(self, entries: beam.PCollection) -> beam.PCollection:
        output_dir, kind = self._output_dir, self._kind
        return (
            entries
            | "OfKind" >> beam.Filter(lambda e: e.kind == kind)
            | "KeyByPath" >> beam.Map(lambda e: (e.path, e))
            | "GroupByPath" >> beam.GroupByKey()
            | "MoveIntoPlace" >> beam.ParDo(_MoveShardFn(output_dir))
            | "Entries" >> beam.combiners.ToList()
            | "RemoveTemporaries" >> beam.Map(_remove_temporaries, output_dir=output_dir, kind=kind)
        )
