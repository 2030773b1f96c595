"""RLDS episodes from TFDS shard files, one work item (one shard) at a time; no Beam, no TF.

Each TFRecord is one episode. `ShardReader` frames the records of a shard
(`formats/tfrecord.py`) and decodes them (`formats/tf_example.py`) with the raw view of
its builder dir's features: whole-episode numpy arrays for `steps`, images left as PNG
bytes. So a worker holds one episode at a time. Files are opened by an injected `Opener`
(path -> binary stream): fsspec by default; the job passes Beam's FileSystems
(`pipeline.read_episodes.open_with_beam`), which is why this module needs no Beam.
`ShardReaders` keeps one reader per builder dir, each parsing its features once.

- `read_shard`: a work item's `RawEpisode`s in record order, keyed by `make_key` (the id
  from the dataset's id fields, else `<shard file name>:<record index>`).
- `read_returns`: pass 1's light read. With a reader limited to `RETURN_STEP_FIELDS` (the
  RLDS flags and the reward) the other keys are never converted, so images and
  observations are not decoded; one `EpisodeReturn` per episode that passes `check_rlds`
  on those fields, in record order.
- `only=`: decode just the records at these indices (pass 1's prompt windows of the
  chosen candidates); the others are framed and checksummed, never parsed.

Bad input: a record whose framing is broken (truncated, checksum mismatch) ends the
shard, since its framing is lost: the episodes before it are yielded, then a `Reject`
with reason `corrupt_record` naming the file and record index (`corrupt_reject`). A
record that is framed but does not parse is rejected the same way and reading goes on.
`strict=True` raises a ValueError instead. `read_returns` yields nothing for either, nor
for an episode that breaks a rule: pass 2 reads it in full and rejects it with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from typing import Any, BinaryIO, ContextManager, Iterator

import fsspec
import numpy as np

from formats.tf_example import (
    ExampleDecoder,
    UndecodableRecord,
    light_features,
    raw_features,
)
from formats.tfrecord import CorruptRecord, iter_records
from schemas.datasets import DatasetSpec
from schemas.fields import REWARD, STEP_FLAGS, STEPS
from transforms.episode import EpisodeKey, EpisodeReturn, RawEpisode, Reject, WorkItem
from transforms.rlds_rules import (
    CORRUPT_RECORD,
    RldsViolation,
    check_rlds,
    episode_return,
)
from transforms.steps import num_emitted_steps

# The step fields pass 1's light read decodes: the flags `check_rlds` looks at and the
# reward a return may sum (those a dataset lacks are simply not read).
RETURN_STEP_FIELDS = (*STEP_FLAGS, REWARD)

# How a shard file is opened for reading: a path -> a binary stream (a context manager).
# The job passes Beam's FileSystems (`pipeline.read_episodes.open_with_beam`); the default
# is fsspec, for code that runs outside Beam.
Opener = Callable[[str], ContextManager[BinaryIO]]


def open_with_fsspec(path: str) -> ContextManager[BinaryIO]:
    return fsspec.open(path, "rb")


class ShardReader:
    """Decodes the records of one builder dir's shards into (steps, episode metadata).

    No TensorFlow (`formats/tfrecord.py`, `formats/tf_example.py`): files are opened with
    `open_file` (local, gs://, ...), framed and checksummed in Python, parsed with
    protobuf into numpy.
    """

    def __init__(
        self,
        builder_dir: str,
        *,
        step_fields: Collection[str] | None = None,
        open_file: Opener = open_with_fsspec,
    ) -> None:
        """`step_fields`: decode only these top-level step fields (and the episode-level
        features); None decodes everything."""
        self._open = open_file
        import tensorflow_datasets as tfds

        features = tfds.builder_from_directory(builder_dir).info.features
        raw = raw_features(features) if step_fields is None else light_features(features, step_fields)
        self._decode = ExampleDecoder(raw)

    def episodes(
        self, shard_path: str, *, only: Collection[int] | None = None
    ) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
        """(record index, decoded episode) in record order; (index, error) for a corrupt one.

        After an unreadable record (lost framing) nothing more is yielded; after an
        unparsable one, reading goes on. `only`: decode just the records at these indices
        (the others are framed and checksummed, never parsed).
        """
        wanted = None if only is None else frozenset(only)
        if wanted is not None and not wanted:
            return
        last = None if wanted is None else max(wanted)
        index = 0
        with self._open(shard_path) as stream:
            records = iter_records(stream)
            while last is None or index <= last:
                try:
                    record = next(records)
                except StopIteration:
                    return
                except CorruptRecord as e:
                    yield index, e
                    return
                if wanted is None or index in wanted:
                    try:
                        yield index, self._decode(record)
                    except UndecodableRecord as e:
                        yield index, e
                index += 1


class ShardReaders:
    """One `ShardReader` per builder dir, made on first use: a worker may read the shards of
    several tasks, and each reader parses its builder's features once."""

    def __init__(self, *, step_fields: Collection[str] | None = None, open_file: Opener = open_with_fsspec) -> None:
        self._step_fields = step_fields
        self._open = open_file
        self._by_dir: dict[str, ShardReader] = {}

    def __call__(self, builder_dir: str) -> ShardReader:
        reader = self._by_dir.get(builder_dir)
        if reader is None:
            reader = self._by_dir[builder_dir] = ShardReader(builder_dir, step_fields=self._step_fields, open_file=self._open)
        return reader


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


def corrupt_reject(item: WorkItem, *, index: int, error: Exception) -> Reject:
    """The reject of an unreadable record (`CORRUPT_RECORD`), naming file and record index."""
    return Reject.of_record(
        item, reason=CORRUPT_RECORD, detail=f"{item.shard_path}: record {index} cannot be read: {error}"
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
