"""The plan of a job (`Plan`), how it is assembled (`make_plan`), its field specs (`all_fields`).

A `Plan` is a resolved dataset: its spec, each task's field specs and per-timestep field
shapes (what decoding a Parquet row back needs), and the work items, one per TFDS shard
(`transforms.episode.WorkItem`). `make_plan` sorts the items by (task, shard path) and
numbers them in that order (`work_items[i].index == i`), so item numbers, and the shard
names derived from them, do not depend on how a directory listing was ordered. Each item
carries the records its shard holds by `shardLengths` (`expected_records`), which the
reader checks. A task
with no train shards is planned with a warning (it has no episodes), not an error.

`all_fields` gives one spec per field path across the tasks (the output metadata records
one); a path tokenized differently in two tasks is a start-up ValueError.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from planning.tfds_dirs import TRAIN_SPLIT
from schemas.datasets import DatasetSpec
from schemas.fields import FieldSpec
from transforms.episode import WorkItem

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved dataset: its spec, per-task field specs, and the work items in order.

    Invariants: `work_items[i].index == i`; items sorted by (task, shard_path); every
    work item's task is in `task_fields` (a task with no shards has no work item, and
    planning logs a warning for it).
    """

    dataset: DatasetSpec
    task_fields: dict[str, dict[str, FieldSpec]]
    work_items: tuple[WorkItem, ...]
    # Per task, each tokenized field's per-timestep shape as stored (None: unknown size):
    # what a decoder needs to turn a Parquet row back into values.
    field_shapes: dict[str, dict[str, tuple[int | None, ...]]] = dataclasses.field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.task_fields)

    def fields_for(self, task: str) -> dict[str, FieldSpec]:
        try:
            return self.task_fields[task]
        except KeyError:
            raise ValueError(f"task {task!r} is not in the plan; planned: {self.tasks}") from None


def make_plan(
    spec: DatasetSpec,
    task_fields: dict[str, dict[str, FieldSpec]],
    shards: Mapping[str, tuple[str, list[str]]],
    shapes: Mapping[str, dict[str, tuple[int | None, ...]]],
    *,
    records: Mapping[str, int] | None = None,
    data_root: str | None = None,
) -> Plan:
    """`shards`: task -> (builder dir, shard paths); `records`: shard path -> the records it
    holds by `shardLengths` (each item's `expected_records`; None where unknown);
    `data_root`: the data dir, which outputs name shards relative to (`WorkItem.source_file`)."""
    records = records or {}
    entries = sorted(
        (task, builder_dir, path)
        for task, (builder_dir, paths) in shards.items()
        for path in paths
    )
    empty = sorted(t for t, (_, paths) in shards.items() if not paths)
    if empty:
        log.warning("tasks with no %s shards (no episodes): %s", TRAIN_SPLIT, empty)
    items = tuple(
        WorkItem(
            dataset=spec.name, task=task, builder_dir=builder_dir, shard_path=path, index=i,
            expected_records=records.get(path),
            data_root=data_root,
        )
        for i, (task, builder_dir, path) in enumerate(entries)
    )
    return Plan(
        dataset=spec,
        task_fields=dict(sorted(task_fields.items())),
        work_items=items,
        field_shapes={task: shapes[task] for task in sorted(task_fields)},
    )


def all_fields(plan: Plan) -> dict[str, Any]:
    """Per-field specs of the dataset, one per path (the output metadata records one).

    Tasks may have different fields (control suite's observations differ per task); a
    path tokenized differently in two tasks is a start-up error.
    """
    merged: dict[str, Any] = {}
    for task in plan.tasks:
        for path, spec in plan.fields_for(task).items():
            if merged.setdefault(path, spec) != spec:
                raise ValueError(
                    f"field {path!r} is tokenized differently across tasks "
                    f"({merged[path]} vs {spec} in {task!r})"
                )
    return merged
