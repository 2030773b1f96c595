"""Read RLDS episodes from TFDS shards: one work item (one shard file) at a time.

Each TFRecord is one episode. Records are streamed (`tf.data.TFRecordDataset`), so a
worker holds one episode at a time, and decoded by a traced `deserialize_example` of a
*raw* view of the features: the `steps` Dataset becomes a Sequence (whole-episode numpy
arrays instead of a nested tf.data.Dataset), and images stay PNG bytes (an Image feature
is stored as one string per step; the raw view reads that string instead of decoding).

Pass 1 reads lighter (`ReadReturns`): only the episode-level features and the step fields
a return and the RLDS flag checks need (`RETURN_STEP_FIELDS`); the parser skips the other
keys of the tf.train.Example, so images and observations are never parsed. Its prompt
windows then decode only the few candidate records (`ShardReader.episodes(only=...)`).

Bad input: a record the TFRecord reader cannot read (truncated, CRC mismatch) ends the
shard, since its framing is lost: the episodes before it are emitted, then a `Reject` with
reason `corrupt_record` naming the file and record index. A record that is framed but
does not parse is rejected the same way and reading goes on. `strict=True` raises instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from typing import Any, Iterator

import apache_beam as beam
import numpy as np

from pipeline.episode import EpisodeKey, EpisodeReturn, RawEpisode, Reject
from pipeline.filter import counter_name
from pipeline.plan import WorkItem
from pipeline.validate import CORRUPT_RECORD, RldsViolation, check_rlds, episode_return, num_emitted_steps
from schemas.datasets import DatasetSpec
from schemas.fields import REWARD, STEP_FLAGS, STEPS

# The step fields pass 1's light read decodes: the flags `check_rlds` looks at and the
# reward a return may sum (those a dataset lacks are simply not read).
RETURN_STEP_FIELDS = (*STEP_FLAGS, REWARD)

EPISODES = "episodes"  # main output tag of ReadEpisodes
REJECTS = "rejects"
COUNTER_NAMESPACE = "gato.read"


def raw_features(features: Any) -> Any:
    """The raw view of a TFDS FeaturesDict (module doc); same serialized layout."""
    import tensorflow_datasets as tfds

    F = tfds.features
    if isinstance(features, F.Dataset):
        return F.Sequence(raw_features(features.feature))
    if isinstance(features, F.FeaturesDict):
        return F.FeaturesDict({k: raw_features(v) for k, v in features.items()})
    if isinstance(features, F.Image):
        # Same serialized info (one tf.string per image): the PNG bytes, undecoded.
        return F.Tensor(shape=(), dtype=np.object_)
    return features


def light_features(features: Any, step_fields: Collection[str]) -> Any:
    """The raw view restricted to the episode-level features and the top-level step
    fields in `step_fields`: the same serialized keys, so unrequested keys are not parsed."""
    import tensorflow_datasets as tfds

    F = tfds.features
    raw = raw_features(features)
    kept = {k: v for k, v in raw.items() if k != STEPS}
    if STEPS in raw:
        steps = raw[STEPS]
        kept[STEPS] = F.Sequence(
            F.FeaturesDict({k: v for k, v in steps.feature.items() if k in step_fields})
        )
    return F.FeaturesDict(kept)


class ShardReader:
    """Decodes the records of one builder dir's shards into (steps, episode metadata).

    Two paths with one result: the fast one maps the decoder over the whole shard inside
    tf.data (about 1.5x faster on short episodes than a Python call per record); at the
    first error it stops, and the careful one takes over from that record, reading and
    decoding record by record so that it can name the bad record and go on after it.
    A light reader (`step_fields`) and a read of chosen records (`only`) always go record
    by record (`episodes`).
    """

    def __init__(self, builder_dir: str, *, step_fields: Collection[str] | None = None) -> None:
        """`step_fields`: decode only these top-level step fields (and the episode-level
        features); None decodes everything."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        self._tf = tf
        features = tfds.builder_from_directory(builder_dir).info.features
        self._light = step_fields is not None
        self._raw = raw_features(features) if step_fields is None else light_features(features, step_fields)
        # Traced once per builder, reused by both paths.
        self._decode = tf.function(
            self._raw.deserialize_example,
            input_signature=[tf.TensorSpec([], tf.string)],
        )
        # Framing errors of the TFRecord reader; a missing file (NotFoundError) is not one.
        self._read_errors = (
            tf.errors.DataLossError,
            tf.errors.OutOfRangeError,
            tf.errors.InvalidArgumentError,
        )
        self._decode_errors = (tf.errors.InvalidArgumentError, ValueError)

    def episodes(
        self, shard_path: str, *, only: Collection[int] | None = None
    ) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
        """(record index, decoded episode) in record order; (index, error) for a corrupt one.

        After an unreadable record (lost framing) nothing more is yielded; after an
        unparsable one, reading goes on. `only`: decode just the records at these indices
        (the others are framed and skipped, never parsed).
        """
        if only is not None or self._light:
            # Record by record: building a mapped tf.data pipeline costs ~30 ms per shard,
            # more than a light decode of a shard, or skipping records unparsed, takes.
            yield from self._careful(shard_path, start=0, only=None if only is None else frozenset(only))
            return
        done = 0
        try:
            dataset = self._tf.data.TFRecordDataset(shard_path).map(self._decode)
            for decoded in dataset.as_numpy_iterator():
                yield done, decoded
                done += 1
            return
        except self._read_errors + self._decode_errors:
            pass  # the careful path finds the bad record again and reports it
        yield from self._careful(shard_path, start=done)

    def _careful(
        self, shard_path: str, *, start: int, only: frozenset[int] | None = None
    ) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
        dataset = self._tf.data.TFRecordDataset(shard_path).skip(start)
        if only is not None:
            if not only:
                return
            dataset = dataset.take(max(only) + 1 - start)  # nothing wanted after the last
        iterator = iter(dataset)
        index = start
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                return
            except self._read_errors as e:
                yield index, e
                return
            if only is not None and index not in only:
                index += 1
                continue
            try:
                decoded = self._decode(record)
            except self._decode_errors as e:
                yield index, e
            else:
                yield index, self._tf.nest.map_structure(lambda t: t.numpy(), decoded)
            index += 1


def _scalar(value: Any) -> Any:
    item = np.asarray(value).item()
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else item


def make_key(
    item: WorkItem, *, spec: DatasetSpec, metadata: dict[str, Any], index: int
) -> EpisodeKey:
    """The key of the `index`-th episode of a work item's shard (ids from the spec's fields)."""
    if spec.id_fields:
        episode_id = "/".join(str(_scalar(metadata[f])) for f in spec.id_fields)
    else:
        # No id field on disk: the record's place is its identity.
        episode_id = f"{os.path.basename(item.shard_path)}:{index}"
    return EpisodeKey(
        dataset=item.dataset,
        task=item.task,
        episode_id=episode_id,
        order_key=tuple(_scalar(metadata[f]) for f in spec.order_key),
        source_file=item.shard_path,
        index_in_file=index,
        work_item=item.index,
    )


_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$")


def corrupt_reject(item: WorkItem, *, index: int, error: Exception) -> Reject:
    # TF's messages wrap the useful part ("truncated record at N") in op names.
    message = _TF_NOISE.sub("", str(error)).strip()
    return Reject(
        dataset=item.dataset,
        task=item.task,
        episode_id=None,
        source_file=item.shard_path,
        reason=CORRUPT_RECORD,
        field=None,
        detail=f"{item.shard_path}: record {index} cannot be read: {message}",
    )


def read_shard(
    item: WorkItem,
    *,
    reader: ShardReader,
    spec: DatasetSpec,
    strict: bool = False,
    only: Collection[int] | None = None,
) -> Iterator[RawEpisode | Reject]:
    """The episodes of one shard in record order, and a Reject for each corrupt record.

    `only`: just the records at these indices (`ShardReader.episodes`)."""
    for index, decoded in reader.episodes(item.shard_path, only=only):
        if isinstance(decoded, Exception):
            reject = corrupt_reject(item, index=index, error=decoded)
            if strict:
                raise ValueError(reject.detail) from decoded
            yield reject
            continue
        steps = decoded.pop(STEPS)
        yield RawEpisode(
            key=make_key(item, spec=spec, metadata=decoded, index=index), steps=steps, episode_metadata=decoded
        )


def _num_steps(steps: dict[str, Any]) -> int:
    for value in steps.values():
        return _num_steps(value) if isinstance(value, dict) else len(value)
    return 0


class ReadEpisodesFn(beam.DoFn):
    """WorkItem -> RawEpisode (main) and Reject (`rejects`); counters per task."""

    def __init__(self, spec: DatasetSpec, *, strict: bool = False, namespace: str = COUNTER_NAMESPACE) -> None:
        self._spec = spec
        self._strict = strict
        self._namespace = namespace

    def setup(self) -> None:
        self._readers: dict[str, ShardReader] = {}

    def process(self, item: WorkItem) -> Iterator[Any]:
        reader = self._readers.get(item.builder_dir)
        if reader is None:
            reader = self._readers[item.builder_dir] = ShardReader(item.builder_dir)
        task = (item.dataset, item.task)

        def counter(what: str) -> Any:
            return beam.metrics.Metrics.counter(self._namespace, counter_name(task, what))

        for out in read_shard(item, reader=reader, spec=self._spec, strict=self._strict):
            if isinstance(out, Reject):
                counter("corrupt_records").inc()
                yield beam.pvalue.TaggedOutput(REJECTS, out)
            else:
                counter("episodes").inc()
                counter("steps").inc(_num_steps(out.steps))
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


def read_returns(item: WorkItem, *, reader: ShardReader, spec: DatasetSpec) -> Iterator[EpisodeReturn]:
    """Pass 1: the return of every episode of a shard that passes `check_rlds` on the fields
    `reader` decodes (a light reader: `RETURN_STEP_FIELDS`), in record order.

    Corrupt records and broken episodes yield nothing here: pass 2 reads them in full and
    rejects them with the reason. An episode whose unread fields break a rule (e.g. a
    step field of another length) has a return here and is rejected by pass 2.
    """
    for raw in read_shard(item, reader=reader, spec=spec):
        if isinstance(raw, Reject):
            continue
        try:
            check_rlds(raw)
        except RldsViolation:
            continue
        yield EpisodeReturn(key=raw.key, value=episode_return(raw, spec), num_steps=num_emitted_steps(raw))


class ReadReturnsFn(beam.DoFn):
    """WorkItem -> EpisodeReturn per valid episode, decoding only `RETURN_STEP_FIELDS`."""

    def __init__(self, spec: DatasetSpec, *, namespace: str) -> None:
        self._spec = spec
        self._namespace = namespace

    def setup(self) -> None:
        self._readers: dict[str, ShardReader] = {}

    def process(self, item: WorkItem) -> Iterator[EpisodeReturn]:
        reader = self._readers.get(item.builder_dir)
        if reader is None:
            reader = self._readers[item.builder_dir] = ShardReader(
                item.builder_dir, step_fields=RETURN_STEP_FIELDS
            )
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
