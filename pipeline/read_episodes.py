"""The Read stages: TFDS shards -> episodes (pass 2) and -> returns (pass 1), one work
item (one shard file) at a time.

Records are decoded by `formats.tfds_shards` (no TensorFlow) from files opened through
fsspec (local, gs://, s3://, ... alike), so a worker holds one episode at a time.
`ReadEpisodes` decodes every field (images stay PNG bytes); `ReadReturns` only the
episode-level fields and `RETURN_STEP_FIELDS` (flags and rewards), never images.

Bad input (`formats.tfds_shards`): every record that cannot be read, decoded or found
(`shardLengths`), or was not promised, is a `Reject` naming file and record index (and the
episode id where it decoded), counted per reason (`REJECT_COUNTERS`); reading goes on
wherever the framing allows; `strict=True` raises instead. Pass 1 yields nothing for any
of them: pass 2 reports every reject.
"""

from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam

from formats.tfds_shards import (
    RETURN_STEP_FIELDS,
    ShardReaders,
    read_returns,
    read_shard,
)
from pipeline.counters import TaskCounters
from pipeline.runner import freeze_worker_heap
from pipeline.rejects import REJECTS_TAG, reject_or_raise
from schemas.datasets import DatasetSpec
from transforms.episode import EpisodeReturn, Reject, WorkItem
from transforms.rlds_rules import (
    CORRUPT_RECORD,
    DTYPE_MISMATCH,
    MISSING_RECORD,
    SHAPE_MISMATCH,
    UNEXPECTED_RECORD,
)
from transforms.steps import count_steps

EPISODES = "episodes"  # main output tag of ReadEpisodes
COUNTER_NAMESPACE = "gato.read"
# The read's reject counter of each reason (`<namespace>:<dataset>/<task>/<counter>`).
REJECT_COUNTERS = {
    CORRUPT_RECORD: "corrupt_records",
    DTYPE_MISMATCH: "dtype_mismatches",
    SHAPE_MISMATCH: "shape_mismatches",
    MISSING_RECORD: "missing_records",
    UNEXPECTED_RECORD: "unexpected_records",
}


class ReadEpisodesFn(beam.DoFn):
    """WorkItem -> RawEpisode (main) and Reject (`rejects`); counters per task."""

    def __init__(self, spec: DatasetSpec, *, strict: bool = False, namespace: str = COUNTER_NAMESPACE) -> None:
        self._spec = spec
        self._strict = strict
        self._namespace = namespace

    def setup(self) -> None:
        freeze_worker_heap()  # each pass's first stage in a worker (pipeline/runner.py)
        self._readers = ShardReaders()
        self._counters = TaskCounters(self._namespace)

    def process(self, item: WorkItem) -> Iterator[Any]:
        reader = self._readers(item.builder_dir)
        task = (item.dataset, item.task)
        for out in read_shard(item, reader=reader, spec=self._spec):
            if isinstance(out, Reject):
                counter = REJECT_COUNTERS.get(out.reason, "rejected")
                yield reject_or_raise(out, strict=self._strict, counters=self._counters, counter=counter)
            else:
                self._counters.inc(task, "episodes")
                self._counters.inc(task, "steps", count_steps(out.steps))
                yield out


class ReadEpisodes(beam.PTransform):
    """PCollection[WorkItem] -> outputs `episodes` (RawEpisode) and `rejects` (Reject).

    Work items are reshuffled first so that shards spread over workers. Counters
    `<namespace>:<dataset>/<task>/episodes|steps` and the reject counters (`REJECT_COUNTERS`:
    `corrupt_records`, `missing_records`, ...); the job's first pass
    reads under its own namespace so the summary does not count episodes twice.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        *,
        strict: bool = False,
        namespace: str = COUNTER_NAMESPACE,
        label: str | None = None,
    ) -> None:
        super().__init__(label)
        self._spec = spec
        self._strict = strict
        self._namespace = namespace

    def expand(self, items: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            items
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShard" >> beam.ParDo(
                ReadEpisodesFn(self._spec, strict=self._strict, namespace=self._namespace)
            ).with_outputs(REJECTS_TAG, main=EPISODES)
        )


class ReadReturnsFn(beam.DoFn):
    """WorkItem -> EpisodeReturn per valid episode, decoding only `RETURN_STEP_FIELDS`."""

    def __init__(self, spec: DatasetSpec, *, namespace: str) -> None:
        self._spec = spec
        self._namespace = namespace

    def setup(self) -> None:
        self._readers = ShardReaders(step_fields=RETURN_STEP_FIELDS)
        self._counters = TaskCounters(self._namespace)

    def process(self, item: WorkItem) -> Iterator[EpisodeReturn]:
        reader = self._readers(item.builder_dir)
        for value in read_returns(item, reader=reader, spec=self._spec):
            self._counters.inc(value.key.task_key, "returns")
            yield value


class ReadReturns(beam.PTransform):
    """PCollection[WorkItem] -> PCollection[EpisodeReturn] (pass 1's light read; module doc).

    Counter `<namespace>:<dataset>/<task>/returns`.
    """

    def __init__(self, spec: DatasetSpec, *, namespace: str, label: str | None = None) -> None:
        super().__init__(label)
        self._spec = spec
        self._namespace = namespace

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        return (
            items
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadReturns" >> beam.ParDo(ReadReturnsFn(self._spec, namespace=self._namespace))
        )
