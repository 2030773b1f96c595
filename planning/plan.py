"""Start-up planning (no Beam): `plan_work`, dataset + task globs -> one work item per TFDS shard.

Everything that can be wrong with the request or the data layout is found here, before any
worker starts, and reported as ONE ValueError: a missing data dir (where it looked), an
unknown dataset or a task glob matching nothing (what exists), a dataset whose features do
not match its registry entry (every such task, field, expected vs found), a bad spec file.

`plan_work` composes the parts: builder dirs on disk (`planning/tfds_dirs.py`), their
features (`planning/features.py`), `rlds:<dir>` datasets outside the registry
(`planning/rlds_dirs.py`), and the plan itself (`planning/work.py`). A registry dataset
is read at its registry version (`schemas/datasets.py`).
"""

from __future__ import annotations

from typing import Sequence

from formats.files import join_url
from planning.features import (
    describe_features,
    feature_mismatches,
    field_shapes,
    registry_fields,
)
from planning.rlds_dirs import plan_rlds_dir
from planning.tfds_dirs import (
    BuilderDir,
    existing_dir,
    find_builder_dirs,
    known_tasks,
    load_infos,
    pick_versions,
    select_builders,
    train_shard_lengths,
    train_shards,
)
from planning.work import Plan, make_plan
from schemas.datasets import RLDS_PREFIX, get_dataset, is_rlds_dir, task_name
from schemas.fields import FieldSpec


def plan_work(
    dataset: str,
    *,
    data_dir: str,
    tasks: Sequence[str] = ("*",),
    rlds_spec: str | None = None,
) -> Plan:
    """Resolve `dataset` and the task globs under `data_dir` to a Plan (module doc).

    `dataset` is a registry name or `rlds:<dir>`; for `rlds:` the data dir is `<dir>`
    itself (`data_dir` is ignored) and `rlds_spec` (default `<dir>/gato_spec.toml` when
    present) overrides inferred settings. Task globs match config names or full task names.
    """
    if not tasks:
        raise ValueError("no task globs given; use ('*',) for every task")
    if is_rlds_dir(dataset):
        return plan_rlds_dir(dataset[len(RLDS_PREFIX) :], tasks=tasks, spec_path=rlds_spec)
    spec = get_dataset(dataset)
    root = existing_dir(data_dir, what=f"data dir of dataset {dataset!r}")
    found: list[BuilderDir] = []
    for tfds_name in spec.tfds_names:
        found.extend(find_builder_dirs(join_url(root, tfds_name), tfds_name))
    on_disk = pick_versions(found, spec.version)
    selected = select_builders(
        on_disk,
        tasks,
        dataset=dataset,
        where=root,
        known=known_tasks(spec),
        other_versions=sorted({task_name(b.tfds_name, b.config) + f" ({b.version})" for b in found}),
        version=spec.version,
    )
    infos = load_infos(selected)
    task_fields: dict[str, dict[str, FieldSpec]] = {}
    shapes: dict[str, dict[str, tuple[int | None, ...]]] = {}
    shards: dict[str, tuple[str, list[str]]] = {}
    records: dict[str, int] = {}
    problems: list[str] = []
    for builder, info in zip(selected, infos):
        task = task_name(builder.tfds_name, builder.config)
        features = describe_features(info.features)
        mismatch = feature_mismatches(spec, found=features)
        if mismatch:
            problems.append(
                f"task {task!r} ({builder.path}): " + "; ".join(mismatch)
            )
            continue
        task_fields[task] = registry_fields(spec, features=features)
        shapes[task] = field_shapes(features)
        shards[task] = (builder.path, train_shards(info, builder.path))
        records.update(train_shard_lengths(info))
    if problems:
        raise ValueError(
            f"dataset {dataset!r}: features on disk do not match the registry:\n  "
            + "\n  ".join(problems)
        )
    return make_plan(spec, task_fields, shards, shapes, records=records, data_root=root)
