"""Start-up planning (no Beam): resolve a dataset and its tasks to one work item per TFDS shard.

Everything that can be wrong with the request or the data layout is found here, before any
worker starts, and reported as ONE ValueError: a missing data dir (where it looked), an
unknown dataset or a task glob matching nothing (what exists), a dataset whose features do
not match its registry entry (field, expected vs found), a bad spec file.

On-disk layout (TFDS): `<data_dir>/<tfds name>/<config>/<version>/` holding
dataset_info.json, features.json and the `train` shards. Paths may be local or `gs://`
(etils.epath, as TFDS uses).
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
    task in `task_fields` has at least one work item.
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
) -> Plan:
    entries = sorted(
        (task, builder_dir, path)
        for task, (builder_dir, paths) in shards.items()
        for path in paths
    )
    empty = sorted(t for t, (_, paths) in shards.items() if not paths)
    if empty:
        log.warning("tasks with no %s shards (no episodes): %s", TRAIN_SPLIT, empty)
    items = tuple(
        WorkItem(dataset=spec.name, task=task, builder_dir=builder_dir, shard_path=path, index=i)
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
