"""Read RLDS episodes from TFDS shards: one work item (one shard file) at a time.

Each TFRecord is one episode. Records are streamed without TensorFlow
(`pipeline/records.py`), so a worker holds one episode at a time, and decoded with a
*raw* view of the features: the `steps` Dataset becomes a Sequence (whole-episode numpy
arrays instead of a nested tf.data.Dataset), and images stay PNG bytes (an Image feature
is stored as one string per step; the raw view reads that string instead of decoding).

Pass 1 reads lighter (`ReadReturns`): only the episode-level features and the step fields
a return and the RLDS flag checks need (`RETURN_STEP_FIELDS`); the other keys of the
tf.train.Example are never converted, so images and observations are not decoded. Its
prompt windows then decode only the few candidate records (`ShardReader.episodes(only=...)`).

Bad input: a record whose framing is broken (truncated, checksum mismatch) ends the
shard, since its framing is lost: the episodes before it are emitted, then a `Reject` with
reason `corrupt_record` naming the file and record index. A record that is framed but
does not parse is rejected the same way and reading goes on. `strict=True` raises instead.
"""

from __future__ import annotations

from typing import Any, BinaryIO, ContextManager, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from formats.tfds_shards import (
    RETURN_STEP_FIELDS,
    ShardReaders,
    read_returns,
    read_shard,
)
from pipeline.counters import counter_name
from schemas.datasets import DatasetSpec
from transforms.episode import EpisodeReturn, Reject, WorkItem
from transforms.steps import count_steps

EPISODES = "episodes"  # main output tag of ReadEpisodes
REJECTS = "rejects"
COUNTER_NAMESPACE = "gato.read"


def open_with_beam(path: str) -> ContextManager[BinaryIO]:
    """A shard opened through Beam's FileSystems (local, gs://, ... as the runner's workers see them)."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class ReadEpisodesFn(beam.DoFn):
    """WorkItem -> RawEpisode (main) and Reject (`rejects`); counters per task."""

    def __init__(self, spec: DatasetSpec, *, strict: bool = False, namespace: str = COUNTER_NAMESPACE) -> None:
        self._spec = spec
        self._strict = strict
        self._namespace = namespace

    def setup(self) -> None:
        self._readers = ShardReaders(open_file=open_with_beam)

    def process(self, item: WorkItem) -> Iterator[Any]:
        reader = self._readers(item.builder_dir)
        task = (item.dataset, item.task)

        def counter(what: str) -> Any:
            return beam.metrics.Metrics.counter(self._namespace, counter_name(task, what))

        for out in read_shard(item, reader=reader, spec=self._spec, strict=self._strict):
            if isinstance(out, Reject):
                counter("corrupt_records").inc()
                yield beam.pvalue.TaggedOutput(REJECTS, out)
            else:
                counter("episodes").inc()
                counter("steps").inc(count_steps(out.steps))
                yield out


class ReadEpisodes(beam.PTransform):
    """PCollection[WorkItem] -> outputs `episodes` (RawEpisode) and `rejects` (Reject).

    Work items are reshuffled first so that shards spread over workers. Counters
    `<namespace>:<dataset>/<task>/episodes|steps|corrupt_records`; the job's first pass
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
            ).with_outputs(REJECTS, main=EPISODES)
        )


class ReadReturnsFn(beam.DoFn):
    """WorkItem -> EpisodeReturn per valid episode, decoding only `RETURN_STEP_FIELDS`."""

    def __init__(self, spec: DatasetSpec, *, namespace: str) -> None:
        self._spec = spec
        self._namespace = namespace

    def setup(self) -> None:
        self._readers = ShardReaders(step_fields=RETURN_STEP_FIELDS, open_file=open_with_beam)

    def process(self, item: WorkItem) -> Iterator[EpisodeReturn]:
        reader = self._readers(item.builder_dir)
        counter = beam.metrics.Metrics.counter(self._namespace, counter_name((item.dataset, item.task), "returns"))
        for value in read_returns(item, reader=reader, spec=self._spec):
            counter.inc()
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
