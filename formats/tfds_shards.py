"""RLDS episodes from TFDS shard files, one work item (one shard) at a time; no Beam, no TF.

Each TFRecord is one episode. `ShardReader` frames the records of a shard
(`formats/tfrecord.py`) and decodes them (`formats/tf_example.py`) with the raw view of
its builder dir's features: whole-episode numpy arrays for `steps`, images left as PNG
bytes. So a worker holds one episode at a time. Files are opened by an injected `Opener`
(path -> binary stream): fsspec, the job's one storage layer (`formats/files.py`), unless
a test injects another. Features come from the builder dir's features.json
(`formats/tfds_info.py`), also through fsspec.
`ShardReaders` keeps one reader per builder dir, each parsing its features once.

- `read_shard`: a work item's `RawEpisode`s in record order, keyed by `make_key` (the id
  from the dataset's id fields, else `<shard file name>:<record index>`).
- `read_returns`: pass 1's light read. With a reader limited to `RETURN_STEP_FIELDS` (the
  RLDS flags and the reward) the other keys are never converted, so images and
  observations are not decoded; one `EpisodeReturn` per episode that passes `check_rlds`
  on those fields, in record order.
- `only=`: decode just the records at these indices (pass 1's prompt windows of the
  chosen candidates); the others are framed and checksummed, never parsed.

Bad input (spec section 7: every record is an episode or a reject naming file and record
index): a record that cannot be read (`formats/tfrecord.py`) or decoded
(`formats/tf_example.py`) becomes a `Reject` (`corrupt_reject`) with the error's reason
(`corrupt_record`, `dtype_mismatch`, `shape_mismatch`) and field, named by its episode id
when the episode-level fields decoded. Reading goes on after it unless the framing is lost
(a length checksum mismatch, a truncation, a length past the end of the file). A shard
holding fewer records than its `shardLengths` (`WorkItem.expected_records`) gives one
`missing_record` reject per record not found (after lost framing: the records after the
broken one); one holding more gives an `unexpected_record` reject per extra record. So per
task, read = kept + dropped + rejected counts every episode the metadata promises.
`strict=True` raises a ValueError instead. `read_returns` yields nothing for any of these,
nor for an episode that breaks a rule: pass 2 reads it in full and rejects it with the
reason. Its light reader checks the step fields it does not convert, so a record pass 2
cannot decode has no return in pass 1 either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from typing import Any, BinaryIO, ContextManager, Iterator

import fsspec
import numpy as np

from formats.tf_example import ExampleDecoder, UndecodableRecord, raw_features
from formats.tfds_info import DATASET_INFO_FILE, read_features
from formats.tfrecord import CorruptRecord, iter_framed
from schemas.datasets import DatasetSpec
from schemas.fields import REWARD, STEP_FLAGS, STEPS
from transforms.episode import EpisodeKey, EpisodeReturn, RawEpisode, Reject, WorkItem
from transforms.rlds_rules import (
    CORRUPT_RECORD,
    MISSING_RECORD,
    UNEXPECTED_RECORD,
    RldsViolation,
    check_rlds,
    episode_return,
)
from transforms.steps import num_emitted_steps


# The step fields pass 1's light read decodes: the flags `check_rlds` looks at and the
# reward a return may sum (those a dataset lacks are simply not read).
RETURN_STEP_FIELDS = (*STEP_FLAGS, REWARD)

# How a shard file is opened for reading: a path -> a binary stream (a context manager).
# fsspec in the job; tests inject failing openers.
Opener = Callable[[str], ContextManager[BinaryIO]]


def open_with_fsspec(path: str) -> ContextManager[BinaryIO]:
    return fsspec.open(path, "rb")


class ShardLengthMismatch(ValueError):
    """A record `shardLengths` promises that the shard does not hold (`missing_record`)."""

    reason = MISSING_RECORD


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
        features), checking the others without converting them; None decodes everything."""
        self._open = open_file
        features = read_features(builder_dir)
        self._decode = ExampleDecoder(raw_features(features), step_fields=step_fields)

    def episodes(
        self, shard_path: str, *, only: Collection[int] | None = None, expected: int | None = None
    ) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
        """(record index, decoded episode) in record order; (index, error) for a record
        that cannot be read or decoded (module doc).

        Reading goes on after a bad record while the framing holds; after lost framing
        nothing more is read. `expected`: the records the shard should hold
        (`shardLengths`); each one not found is `(index, ShardLengthMismatch)`. `only`:
        decode just the records at these indices (the others are framed and checksummed,
        never parsed; `expected` is then not checked).
        """
        wanted = None if only is None else frozenset(only)
        if wanted is not None and not wanted:
            return
        last = None if wanted is None else max(wanted)
        index, lost = 0, None
        with self._open(shard_path) as stream:
            for record in iter_framed(stream):
                if isinstance(record, CorruptRecord):
                    if wanted is None or index in wanted or record.framing_lost:
                        yield index, record
                    lost = index if record.framing_lost else None
                elif wanted is None or index in wanted:
                    try:
                        yield index, self._decode(record)
                    except UndecodableRecord as e:
                        yield index, e
                index += 1
                if last is not None and index > last:
                    return
        if wanted is None and expected is not None:
            found = f"its framing was lost at record {lost}" if lost is not None else f"it holds {index} records"
            for missing in range(index, expected):
                yield missing, ShardLengthMismatch(
                    f"not in the file: {DATASET_INFO_FILE} promises {expected} records in this shard, {found}"
                )


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
        source_file=item.source_file,
        index_in_file=index,
        work_item=item.index,
    )


def corrupt_reject(
    item: WorkItem, *, index: int, error: Exception, spec: DatasetSpec | None = None
) -> Reject:
    """The reject of a record that cannot be read or decoded, naming file and record index,
    with the error's reason (`CORRUPT_RECORD` by default) and field; named by its episode
    when the error carries the episode-level fields and `spec` makes a key of them."""
    reason = getattr(error, "reason", CORRUPT_RECORD)
    field = getattr(error, "field", None)
    fields = getattr(error, "episode_fields", None)
    key = None
    if spec is not None and fields is not None:
        try:
            key = make_key(item, spec=spec, metadata=fields, index=index)
        except KeyError:  # an id field did not decode: the record is all that names it
            key = None
    if key is None:
        detail = f"{item.source_file}: record {index} cannot be read: {error}"
        return Reject.of_record(item, reason=reason, detail=detail, field=field)
    detail = f"{item.source_file}: record {index} (episode {key.episode_id!r}) cannot be read: {error}"
    return Reject.of_episode(key, reason=reason, field=field, detail=detail)


def _unexpected_reject(item: WorkItem, key: EpisodeKey) -> Reject:
    return Reject.of_episode(
        key,
        reason=UNEXPECTED_RECORD,
        field=None,
        detail=f"{item.source_file}: record {key.index_in_file} (episode {key.episode_id!r}) is "
        f"past the {item.expected_records} records {DATASET_INFO_FILE} promises in this shard",
    )


def read_shard(
    item: WorkItem,
    *,
    reader: ShardReader,
    spec: DatasetSpec,
    strict: bool = False,
    only: Collection[int] | None = None,
) -> Iterator[RawEpisode | Reject]:
    """The episodes of one shard in record order, and a Reject for each record that cannot
    be read, decoded, found (`item.expected_records`) or was not promised (module doc).

    `only`: just the records at these indices (`ShardReader.episodes`)."""
    expected = item.expected_records
    for index, decoded in reader.episodes(item.shard_path, only=only, expected=expected):
        if isinstance(decoded, Exception):
            reject = corrupt_reject(item, index=index, error=decoded, spec=spec)
        else:
            steps = decoded.pop(STEPS)
            key = make_key(item, spec=spec, metadata=decoded, index=index)
            if expected is None or index < expected:
                yield RawEpisode(key=key, steps=steps, episode_metadata=decoded)
                continue
            reject = _unexpected_reject(item, key)
        if strict:
            raise ValueError(reject.detail) from (decoded if isinstance(decoded, Exception) else None)
        yield reject


def read_returns(item: WorkItem, *, reader: ShardReader, spec: DatasetSpec) -> Iterator[EpisodeReturn]:
    """Pass 1: the return of every episode of a shard that passes `check_rlds` on the fields
    `reader` decodes (a light reader: `RETURN_STEP_FIELDS`), in record order.

    Records that cannot be read, decoded (the light reader checks the fields it skips:
    dtype, shape) or were not promised, and broken episodes, yield nothing here: pass 2
    reads them in full and rejects them with the reason. An episode whose unread fields
    break an RLDS rule (a decodable step field with another number of steps) has a
    return here and is rejected by pass 2.
    """
    for raw in read_shard(item, reader=reader, spec=spec):
        if isinstance(raw, Reject):
            continue
        try:
            check_rlds(raw)
        except RldsViolation:
            continue
        yield EpisodeReturn(key=raw.key, value=episode_return(raw, spec), num_steps=num_emitted_steps(raw))
