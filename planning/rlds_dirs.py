"""Planning `rlds:<dir>`: any RLDS dataset in TFDS format, outside the registry (start-up, no Beam).

`<dir>` is one builder dir (it holds dataset_info.json) or a TFDS data dir below which
builder dirs are found; each config's newest version is read, and the task globs select
configs. The dataset's spec is inferred from the features and may be overridden by a TOML
spec file (`--rlds_spec`, default `<dir>/gato_spec.toml`; format in `schemas/rlds_spec.py`):
- order key and ids: `episode_id` when every selected config has it, else the record's
  place (`<shard file name>:<record index>`);
- return: the `episode_return` field when present, else the sum of rewards;
- fields: one modality per feature (Image -> image, integer/bool -> discrete, float ->
  continuous mu-law, Text -> text).

Every selected config must look like RLDS (per-step `is_first`, `is_last` and `reward`,
and an observation or an action), and the spec file may only name fields that exist; each
failure is one ValueError naming the directory or the spec file.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from formats.files import join_url, read_bytes, url_exists
from planning.features import describe_features, field_shapes
from planning.tfds_dirs import (
    DATASET_INFO_FILE,
    MAX_LISTED_NAMES,
    builder_dir_from_info,
    existing_dir,
    find_builder_dirs,
    load_infos,
    pick_versions,
    select_builders,
    train_shard_lengths,
    train_shards,
)
from planning.work import Plan, make_plan
from schemas.datasets import RLDS_PREFIX, DatasetSpec, task_name
from schemas.fields import (
    ACTION,
    EPISODE_ID,
    EPISODE_RETURN,
    IS_FIRST,
    IS_LAST,
    OBSERVATION,
    PATH_SEPARATOR,
    REWARD,
    STEPS,
    FieldSpec,
)
from schemas.rlds_spec import (
    RETURN_EPISODE_RETURN,
    RETURN_SUM_REWARDS,
    SPEC_FILE_NAME,
    FeatureInfo,
    RldsOverrides,
    parse_spec,
    resolve_fields,
    step_path,
    tokenized_fields,
)


def plan_rlds_dir(directory: str, *, tasks: Sequence[str], spec_path: str | None) -> Plan:
    root = existing_dir(directory, what=f"{RLDS_PREFIX} directory")
    if url_exists(join_url(root, DATASET_INFO_FILE)):
        found = [builder_dir_from_info(root)]
    else:
        found = find_builder_dirs(root, None)
    if not found:
        raise ValueError(
            f"{RLDS_PREFIX}{directory}: no TFDS dataset found (looked for {DATASET_INFO_FILE} "
            f"in {root} and in <tfds name>/[<config>/]<version>/ below it)"
        )
    overrides = _load_overrides(root, spec_path)
    on_disk = pick_versions(found, None)
    selected = select_builders(on_disk, tasks, dataset=f"{RLDS_PREFIX}{directory}", where=root,
                       known=[], other_versions=[], version=None)
    if overrides.task is not None and len(selected) > 1:
        raise ValueError(
            f"spec file sets task = {overrides.task!r} but {len(selected)} configs are "
            f"selected ({[task_name(b.tfds_name, b.config) for b in selected][:MAX_LISTED_NAMES]}); "
            "select one with the task globs or drop `task`"
        )
    names = sorted({b.tfds_name for b in selected})
    name = names[0] if len(names) == 1 else root.rsplit("/", 1)[-1]
    infos = load_infos(selected)
    all_features = [describe_features(info.features) for info in infos]
    source = spec_path or join_url(root, SPEC_FILE_NAME)
    spec = _rlds_dataset_spec(name, all_features, overrides, source=source)
    task_fields: dict[str, dict[str, FieldSpec]] = {}
    shapes: dict[str, dict[str, tuple[int | None, ...]]] = {}
    shards: dict[str, tuple[str, list[str]]] = {}
    records: dict[str, int] = {}
    for builder, info, features in zip(selected, infos, all_features):
        task = overrides.task or task_name(builder.tfds_name, builder.config)
        _check_rlds_layout(features, task=task, where=str(builder.path))
        task_fields[task] = resolve_fields(features, overrides=overrides.field_overrides, source=source)
        shapes[task] = field_shapes(features)
        shards[task] = (builder.path, train_shards(info, builder.path))
        records.update(train_shard_lengths(info))
    return make_plan(spec, task_fields, shards, shapes, records=records, data_root=root)


def _load_overrides(root: str, spec_path: str | None) -> RldsOverrides:
    path = spec_path or join_url(root, SPEC_FILE_NAME)
    if not url_exists(path):
        if spec_path:
            raise ValueError(f"spec file {spec_path} does not exist")
        return RldsOverrides()
    return parse_spec(read_bytes(path).decode("utf-8"), source=path)


def _rlds_dataset_spec(
    name: str,
    all_features: list[dict[str, FeatureInfo]],
    overrides: RldsOverrides,
    *,
    source: str,
) -> DatasetSpec:
    """Order key, id and return source: from the spec file, else inferred from the fields."""
    episode_fields = set.intersection(
        *({p for p in f if not p.startswith(STEPS + PATH_SEPARATOR)} for f in all_features)
    )
    has_id = EPISODE_ID in episode_fields
    order_key = overrides.order_key if overrides.order_key is not None else (
        (EPISODE_ID,) if has_id else ()
    )
    missing = [k for k in order_key if k not in episode_fields]
    if missing:
        raise ValueError(
            f"{source}: order_key fields {missing} are not episode-level fields of every "
            f"selected config; episode-level fields: {sorted(episode_fields)}"
        )
    has_return = EPISODE_RETURN in episode_fields
    return_source = overrides.return_source or (
        RETURN_EPISODE_RETURN if has_return else RETURN_SUM_REWARDS
    )
    if return_source == RETURN_EPISODE_RETURN and not has_return:
        raise ValueError(
            f"{source}: return = {RETURN_EPISODE_RETURN!r} but the dataset has no "
            f"{EPISODE_RETURN!r} field; use {RETURN_SUM_REWARDS!r}"
        )
    kwargs: dict[str, Any] = {}
    if overrides.local_position_table is not None:
        kwargs["local_position_table"] = overrides.local_position_table
    return DatasetSpec(
        name=name,
        tfds_names=(name,),
        version=None,
        order_key=tuple(order_key),
        id_fields=(EPISODE_ID,) if has_id else (),
        return_source=return_source,
        task_name=overrides.task,
        **kwargs,
    )


def _check_rlds_layout(features: Mapping[str, FeatureInfo], *, task: str, where: str) -> None:
    """An RLDS dataset has per-step is_first/is_last flags, a reward, and observation or action."""
    required = [step_path(IS_FIRST), step_path(IS_LAST), step_path(REWARD)]
    missing = [p for p in required if p not in features]
    if not tokenized_fields(features):
        missing.append(f"{step_path(OBSERVATION)} or {step_path(ACTION)}")
    if missing:
        raise ValueError(
            f"task {task!r} ({where}) is not an RLDS dataset: missing {missing}; "
            f"found fields {sorted(features)[:MAX_LISTED_NAMES]}"
        )
