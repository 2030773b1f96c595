"""Elements that flow between Beam stages. Plain, picklable, numpy-based; no Beam, no TensorFlow.

`WorkItem` (one TFDS shard of one task: the unit of reading) -> `RawEpisode` (RLDS steps
as numpy, images still PNG bytes) -> `EpisodeReturn` (all the filter holds per episode)
and `FilterDecision` -> `KeptEpisode` (kept and tokenized: what the statistics count as
kept). `Reject` is an episode or record a stage could not use (spec section 7): made by
`Reject.of_episode` (named by its id and source file) or `Reject.of_record` (a record
never read as an episode, so no id).

Identity: an episode is named by (dataset, task, episode_id). `order_key` gives the
dataset's collection order (spec section 4); ties in it are broken by
(source_file, index_in_file), so the order (`EpisodeKey.sort_key`) is total and
deterministic. `TaskKey` (dataset, task) is the key of every per-task stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any

TaskKey = tuple[str, str]  # (dataset, task): the grouping key of every per-task stage


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One TFDS shard file of one task: the unit a read worker handles."""

    dataset: str  # registry name (or the dataset name of an `rlds:` dir)
    task: str  # `<tfds name>/<config>`, or the spec file's task name
    builder_dir: str  # `<data_dir>/<tfds name>/<config>/<version>`
    shard_path: str
    index: int  # position in the plan's work item list
    # Records the shard holds by dataset_info.json's `shardLengths` (None: unknown); the
    # reader reports each one it cannot find, and each one past it, as a reject.
    expected_records: int | None = None
    # The data dir the plan was made from (planning sets it; None: unknown).
    data_root: str | None = None

    @property
    def source_file(self) -> str:
        """How outputs name the shard: its path relative to `data_root` when it lies under
        it, else `shard_path`. So outputs do not depend on where the data lives (a local
        copy, gs://, s3://)."""
        if self.data_root:
            prefix = self.data_root.rstrip("/") + "/"
            if self.shard_path.startswith(prefix):
                return self.shard_path[len(prefix):]
        return self.shard_path


@dataclasses.dataclass(frozen=True)
class EpisodeKey:
    """Who an episode is and where it came from."""

    dataset: str  # registry name, e.g. "atari"
    task: str  # e.g. "rlu_atari/Pong_run_1"
    episode_id: str  # the dataset's id, rendered as text (composite ids joined with "/")
    order_key: tuple[Any, ...]  # collection order within the task, e.g. (checkpoint_id, episode_id)
    source_file: str  # the TFRecord shard it was read from (`WorkItem.source_file`)
    index_in_file: int  # its record index in that shard
    work_item: int = 0  # index of the read work item (one TFDS shard) it came from

    @property
    def task_key(self) -> TaskKey:
        return (self.dataset, self.task)

    def location(self) -> str:
        """Where the episode was read, for messages: `file '...' (record N), task '...'`."""
        return f"file {self.source_file!r} (record {self.index_in_file}), task {self.task!r}"

    def sort_key(self) -> tuple[Any, ...]:
        """Total collection order: the order key, then file and record (deterministic ties)."""
        return (self.order_key, self.source_file, self.index_in_file)


@dataclasses.dataclass
class RawEpisode:
    """An episode as read: RLDS steps as numpy, images still PNG-encoded.

    `steps` is a nested dict mirroring the TFDS `steps` feature: every leaf has a
    leading time axis over all RLDS steps (the final `is_last` step included). Image
    leaves are 1-D object arrays of PNG `bytes`; text leaves 1-D object arrays of bytes.
    `episode_metadata` holds the episode-level fields (e.g. `episode_return`).
    """

    key: EpisodeKey
    steps: dict[str, Any]
    episode_metadata: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class EpisodeReturn:
    """The return of one episode: all the filter ever holds per episode."""

    key: EpisodeKey
    value: float
    num_steps: int  # emitted timesteps (RLDS steps minus the final is_last step)


@dataclasses.dataclass(frozen=True)
class Reject:
    """An episode that could not be used (spec section 7), with a reason code and message."""

    dataset: str
    task: str
    episode_id: str | None
    source_file: str
    reason: str
    field: str | None
    detail: str

    @classmethod
    def of_episode(cls, key: EpisodeKey, *, reason: str, field: str | None, detail: str) -> Reject:
        """The reject of a read episode: named by its id and source file."""
        return cls(
            dataset=key.dataset,
            task=key.task,
            episode_id=key.episode_id,
            source_file=key.source_file,
            reason=reason,
            field=field,
            detail=detail,
        )

    @classmethod
    def of_record(cls, item: WorkItem, *, reason: str, detail: str, field: str | None = None) -> Reject:
        """The reject of a record that could not be read as an episode (no id to name):
        `detail` names the file and the record index."""
        return cls(
            dataset=item.dataset,
            task=item.task,
            episode_id=None,
            source_file=item.source_file,
            reason=reason,
            field=field,
            detail=detail,
        )

    @property
    def task_key(self) -> TaskKey:
        return (self.dataset, self.task)


@dataclasses.dataclass(frozen=True)
class FilterDecision:
    """The filter's verdict on one episode (spec section 4), for statistics and audits."""

    key: EpisodeKey
    value: float  # the episode's return
    kept: bool
    reason: str  # a short code: e.g. "at_or_above_threshold", "below_threshold", "no_filter"


@dataclasses.dataclass(frozen=True)
class KeptEpisode:
    """An episode the filter kept and tokenization accepted: what the statistics count as kept.

    An episode kept by the filter but rejected by tokenization is a `Reject`, not this, so
    per task: read = kept + dropped + rejected.
    """

    key: EpisodeKey
    value: float  # the episode's return
    timesteps: int  # emitted timesteps
    tokens: int  # tokens of its timesteps, before sequencing (no prompts, no padding)
