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

import concurrent.futures
import dataclasses
import fnmatch
import json
import logging
from typing import Any, Iterable, Mapping, Sequence

from etils import epath

from pipeline.records import check_decodable, raw_features
from schemas.datasets import (
    RLDS_PREFIX,
    DatasetSpec,
    get_dataset,
    is_rlds_dir,
    task_name,
)
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
    KIND_IMAGE,
    KIND_TENSOR,
    KIND_TEXT,
    RETURN_EPISODE_RETURN,
    RETURN_SUM_REWARDS,
    SPEC_FILE_NAME,
    FeatureInfo,
    RldsOverrides,
    infer_field_spec,
    parse_spec,
    resolve_fields,
    step_path,
    tokenized_fields,
)

TRAIN_SPLIT = "train"
DATASET_INFO_FILE = "dataset_info.json"
MAX_LISTED_NAMES = 20
_INCOMPLETE_PREFIX = "incomplete."
_INFO_THREADS = 16  # dataset_info reads are I/O bound (GCS round trips)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One TFDS shard file of one task: the unit a read worker handles."""

    dataset: str  # registry name (or the dataset name of an `rlds:` dir)
    task: str  # `<tfds name>/<config>`, or the spec file's task name
    builder_dir: str  # `<data_dir>/<tfds name>/<config>/<version>`
    shard_path: str
    index: int  # position in the plan's work item list


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


@dataclasses.dataclass(frozen=True)
class _BuilderDir:
    """A builder dir found on disk (not yet opened)."""

    tfds_name: str
    config: str
    version: str
    path: epath.Path


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
        return _plan_rlds(dataset[len(RLDS_PREFIX) :], tasks=tasks, spec_path=rlds_spec)
    spec = get_dataset(dataset)
    root = _existing_dir(data_dir, what=f"data dir of dataset {dataset!r}")
    found: list[_BuilderDir] = []
    for tfds_name in spec.tfds_names:
        found.extend(_find_builder_dirs(root / tfds_name, tfds_name))
    on_disk = _pick_versions(found, spec.version)
    selected = _select(
        on_disk,
        tasks,
        dataset=dataset,
        where=str(root),
        known=_known_tasks(spec),
        other_versions=sorted({task_name(b.tfds_name, b.config) + f" ({b.version})" for b in found}),
        version=spec.version,
    )
    infos = _load_infos(selected)
    task_fields: dict[str, dict[str, FieldSpec]] = {}
    shapes: dict[str, dict[str, tuple[int | None, ...]]] = {}
    shards: dict[str, tuple[str, list[str]]] = {}
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
        shards[task] = (str(builder.path), _train_shards(info, builder.path))
    if problems:
        raise ValueError(
            f"dataset {dataset!r}: features on disk do not match the registry:\n  "
            + "\n  ".join(problems)
        )
    return _make_plan(spec, task_fields, shards, shapes)


def registry_fields(spec: DatasetSpec, *, features: Mapping[str, FeatureInfo]) -> dict[str, FieldSpec]:
    """The FieldSpecs of one task: the registry's, plus inferred ones for `infer_roles`."""
    fields = dict(spec.field_specs)
    for field, info in tokenized_fields(features).items():
        role = field.split(PATH_SEPARATOR, 1)[0]
        if role in spec.infer_roles and field not in fields:
            fields[field] = infer_field_spec(field, info)
    return dict(sorted(fields.items()))


def feature_mismatches(spec: DatasetSpec, *, found: Mapping[str, FeatureInfo]) -> list[str]:
    """Human-readable differences between the registry's expected features and `found`.

    Every expected path (or pattern) must be present and match; every tokenized step field
    on disk must be expected (an unexpected observation would otherwise fail every episode
    at tokenization).
    """
    problems = []
    for pattern, expected in spec.expected_features:
        matches = [p for p in found if fnmatch.fnmatchcase(p, pattern)]
        if not matches:
            problems.append(f"field {pattern!r} missing (expected {expected})")
        for path in matches:
            if not expected.matches(found[path]):
                problems.append(f"field {path!r}: expected {expected}, found {found[path]}")
    patterns = [p for p, _ in spec.expected_features]
    for field in tokenized_fields(found):
        path = step_path(field)
        if not any(fnmatch.fnmatchcase(path, p) for p in patterns):
            problems.append(f"field {path!r} ({found[path]}) is not in the registry entry")
    return problems


def describe_features(features: Any) -> dict[str, FeatureInfo]:
    """Flatten a TFDS FeaturesDict to {path: FeatureInfo}; `steps` leaves are per step."""
    import tensorflow_datasets as tfds  # lazy: plan_work's callers need not pay for TF

    out: dict[str, FeatureInfo] = {}

    def walk(feature: Any, path: str) -> None:
        F = tfds.features
        if isinstance(feature, F.FeaturesDict):
            for key, sub in feature.items():
                walk(sub, f"{path}{PATH_SEPARATOR}{key}" if path else key)
        elif isinstance(feature, F.Dataset):
            walk(feature.feature, path)
        elif isinstance(feature, F.Image):
            out[path] = FeatureInfo(KIND_IMAGE, _dtype_name(feature.np_dtype), tuple(feature.shape))
        elif isinstance(feature, F.Text):
            out[path] = FeatureInfo(KIND_TEXT, "string", ())
        elif isinstance(feature, F.Tensor):  # Scalar and ClassLabel included
            out[path] = FeatureInfo(KIND_TENSOR, _dtype_name(feature.np_dtype), tuple(feature.shape))
        else:
            raise ValueError(
                f"feature {path!r} has type {type(feature).__name__}, which this pipeline "
                "does not read (supported: FeaturesDict, Dataset, Image, Text, Tensor)"
            )

    walk(features, "")
    check_decodable(raw_features(features))  # a start-up error, not one per worker
    return out


def _dtype_name(dtype: Any) -> str:
    import numpy as np

    dt = np.dtype(dtype)
    return "string" if dt.kind in "OSU" else dt.name


# --- rlds:<dir> ---


def _plan_rlds(directory: str, *, tasks: Sequence[str], spec_path: str | None) -> Plan:
    root = _existing_dir(directory, what=f"{RLDS_PREFIX} directory")
    if (root / DATASET_INFO_FILE).exists():
        found = [_builder_dir_from_info(root)]
    else:
        found = _find_builder_dirs(root, None)
    if not found:
        raise ValueError(
            f"{RLDS_PREFIX}{directory}: no TFDS dataset found (looked for {DATASET_INFO_FILE} "
            f"in {root} and in <tfds name>/[<config>/]<version>/ below it)"
        )
    overrides = _load_overrides(root, spec_path)
    on_disk = _pick_versions(found, None)
    selected = _select(on_disk, tasks, dataset=f"{RLDS_PREFIX}{directory}", where=str(root),
                       known=[], other_versions=[], version=None)
    if overrides.task is not None and len(selected) > 1:
        raise ValueError(
            f"spec file sets task = {overrides.task!r} but {len(selected)} configs are "
            f"selected ({[task_name(b.tfds_name, b.config) for b in selected][:MAX_LISTED_NAMES]}); "
            "select one with the task globs or drop `task`"
        )
    names = sorted({b.tfds_name for b in selected})
    name = names[0] if len(names) == 1 else root.name
    infos = _load_infos(selected)
    all_features = [describe_features(info.features) for info in infos]
    source = spec_path or str(root / SPEC_FILE_NAME)
    spec = _rlds_dataset_spec(name, all_features, overrides, source=source)
    task_fields: dict[str, dict[str, FieldSpec]] = {}
    shapes: dict[str, dict[str, tuple[int | None, ...]]] = {}
    shards: dict[str, tuple[str, list[str]]] = {}
    for builder, info, features in zip(selected, infos, all_features):
        task = overrides.task or task_name(builder.tfds_name, builder.config)
        _check_rlds_layout(features, task=task, where=str(builder.path))
        task_fields[task] = resolve_fields(features, overrides=overrides.field_overrides, source=source)
        shapes[task] = field_shapes(features)
        shards[task] = (str(builder.path), _train_shards(info, builder.path))
    return _make_plan(spec, task_fields, shards, shapes)


def _load_overrides(root: epath.Path, spec_path: str | None) -> RldsOverrides:
    path = epath.Path(spec_path) if spec_path else root / SPEC_FILE_NAME
    if not path.exists():
        if spec_path:
            raise ValueError(f"spec file {spec_path} does not exist")
        return RldsOverrides()
    return parse_spec(path.read_text(), source=str(path))


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


# --- Shared helpers ---


def _existing_dir(path: str, *, what: str) -> epath.Path:
    root = epath.Path(path)
    if not root.exists():
        raise ValueError(f"{what} does not exist: looked in {root}")
    if not root.is_dir():
        raise ValueError(f"{what} is not a directory: {root}")
    return root


def _find_builder_dirs(base: epath.Path, tfds_name: str | None) -> list[_BuilderDir]:
    """Builder dirs under `base`: `<config>/<version>` (or `<name>/<config>/<version>` etc.)."""
    if not base.exists():
        return []
    patterns = (
        [f"*/*/{DATASET_INFO_FILE}", f"*/{DATASET_INFO_FILE}"]
        if tfds_name is not None
        else [f"*/*/*/{DATASET_INFO_FILE}", f"*/*/{DATASET_INFO_FILE}"]
    )
    found = []
    for pattern in patterns:
        for info in base.glob(pattern):
            # TFDS writes into `incomplete.*` dirs and renames them when done.
            if not info.parent.name.startswith(_INCOMPLETE_PREFIX):
                found.append(_builder_dir_from_info(info.parent))
    # The config-less pattern also sees `<config>/<version>` one level short; keep real ones.
    unique = {str(b.path): b for b in found}
    return sorted(unique.values(), key=lambda b: (b.tfds_name, b.config, b.version))


def _builder_dir_from_info(path: epath.Path) -> _BuilderDir:
    """Name, config and version from a builder dir's dataset_info.json."""
    info = json.loads((path / DATASET_INFO_FILE).read_text())
    return _BuilderDir(
        tfds_name=info.get("name", path.parent.name),
        config=info.get("configName", "") or "",
        version=info.get("version", path.name),
        path=path,
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def _pick_versions(found: Iterable[_BuilderDir], version: str | None) -> list[_BuilderDir]:
    """One builder dir per (name, config): the required version, else the newest."""
    best: dict[tuple[str, str], _BuilderDir] = {}
    for b in found:
        if version is not None and b.version != version:
            continue
        key = (b.tfds_name, b.config)
        if key not in best or _version_key(b.version) > _version_key(best[key].version):
            best[key] = b
    return [best[k] for k in sorted(best)]


def _known_tasks(spec: DatasetSpec) -> list[str]:
    """Task names the TFDS builder classes define (empty for project-recorded datasets)."""
    if not spec.config_builders:
        return []
    import tensorflow_datasets as tfds

    return [
        task_name(name, config.name)
        for name in spec.tfds_names
        for config in tfds.builder_cls(name).BUILDER_CONFIGS
    ]


def _listing(names: Sequence[str]) -> str:
    """At most MAX_LISTED_NAMES names, then the count."""
    if not names:
        return "none"
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    more = ", ..." if len(names) > MAX_LISTED_NAMES else ""
    return f"[{shown}{more}] ({len(names)} in all)"


def _select(
    on_disk: list[_BuilderDir],
    globs: Sequence[str],
    *,
    dataset: str,
    where: str,
    known: list[str],
    other_versions: list[str],
    version: str | None,
) -> list[_BuilderDir]:
    """The builder dirs whose config (or task name) matches any glob; every glob must match."""
    def matches(b: _BuilderDir, pattern: str) -> bool:
        return fnmatch.fnmatchcase(b.config, pattern) or fnmatch.fnmatchcase(
            task_name(b.tfds_name, b.config), pattern
        )

    selected: dict[str, _BuilderDir] = {}
    problems = []
    tasks_on_disk = [task_name(b.tfds_name, b.config) for b in on_disk]
    for pattern in globs:
        hits = [b for b in on_disk if matches(b, pattern)]
        if not hits:
            known_hits = [
                t for t in known
                if fnmatch.fnmatchcase(t, pattern)
                or fnmatch.fnmatchcase(t.split(PATH_SEPARATOR, 1)[1], pattern)
            ]
            detail = (
                f"task glob {pattern!r} matches no task of {dataset!r} under {where}"
                + (f" (version {version})" if version else "")
            )
            if known_hits:
                detail += f" ({len(known_hits)} known tasks match it, none on disk)"
            problems.append(detail)
        for b in hits:
            selected[str(b.path)] = b
    if problems:
        message = "; ".join(problems) + f". Tasks on disk: {_listing(tasks_on_disk)}"
        if not tasks_on_disk and other_versions:
            message += f"; found other versions only: {_listing(other_versions)}"
        if known:
            message += f"; known tasks: {_listing(known)}"
        raise ValueError(message)
    return sorted(selected.values(), key=lambda b: (b.tfds_name, b.config))


def _load_infos(builders: Sequence[_BuilderDir]) -> list[Any]:
    """DatasetInfo of each builder dir (read concurrently: one GCS round trip each)."""
    import tensorflow_datasets as tfds

    def load(b: _BuilderDir) -> Any:
        try:
            return tfds.builder_from_directory(b.path).info
        except Exception as e:  # noqa: BLE001 - any unreadable metadata is one start-up error
            raise ValueError(f"cannot open TFDS builder dir {b.path}: {e}") from e

    with concurrent.futures.ThreadPoolExecutor(_INFO_THREADS) as pool:
        return list(pool.map(load, builders))


def _train_shards(info: Any, builder_dir: epath.Path) -> list[str]:
    splits = info.splits
    if TRAIN_SPLIT not in splits:
        raise ValueError(
            f"{builder_dir} has no {TRAIN_SPLIT!r} split; splits: {sorted(splits.keys())}"
        )
    paths = [str(p) for p in splits[TRAIN_SPLIT].filepaths]
    # One listing per builder dir, not one stat per shard (hundreds of shards on GCS).
    present = {p.name for p in builder_dir.iterdir()}
    missing = [p for p in paths if epath.Path(p).name not in present]
    if missing:
        raise ValueError(
            f"{builder_dir}: {len(missing)} of {len(paths)} {TRAIN_SPLIT} shards listed in "
            f"{DATASET_INFO_FILE} are missing, e.g. {missing[0]}"
        )
    return paths


def field_shapes(features: Mapping[str, FeatureInfo]) -> dict[str, tuple[int | None, ...]]:
    """{field path: per-timestep shape} of the tokenized step fields (text: `()`)."""
    return {field: tuple(info.shape or ()) for field, info in tokenized_fields(features).items()}


def _make_plan(
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
