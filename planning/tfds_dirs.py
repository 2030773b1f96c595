"""TFDS builder dirs on disk (start-up, no Beam): what exists, which version, which tasks match.

On-disk layout (TFDS): `<data_dir>/<tfds name>/<config>/<version>/` holding
dataset_info.json, features.json and the `train` shards. Paths are local paths or fsspec
URLs (`gs://`, `s3://`, ...), read through fsspec (`formats/files.py`, `formats/tfds_info.py`).

- `find_builder_dirs`: every builder dir under a base, named from its dataset_info.json;
  `incomplete.*` dirs (TFDS writes into them, then renames) are skipped.
- `pick_versions`: one dir per (name, config): the required version, else the newest.
- `select_builders`: the dirs each glob matches by config or full task name. Every glob
  must match; otherwise one ValueError lists the tasks on disk (at most
  `MAX_LISTED_NAMES`), other versions found, and the tasks the TFDS builder classes know.
- `load_infos`: each dir's `BuilderInfo`, read concurrently (a few round trips each);
  `train_shards`: the train split's files, all checked present with one listing per dir;
  `train_shard_lengths`: the records each one holds by `shardLengths`.

Every error is a ValueError naming the path it looked in.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fnmatch
import importlib
from typing import Iterable, Sequence

from formats.files import glob_relative, join_url, list_names, url_exists, url_is_dir
from formats.tfds_info import DATASET_INFO_FILE, BuilderInfo, read_builder_info, read_info_names
from schemas.datasets import DatasetSpec, task_name
from schemas.fields import PATH_SEPARATOR

TRAIN_SPLIT = "train"
MAX_LISTED_NAMES = 20
_INCOMPLETE_PREFIX = "incomplete."
_INFO_THREADS = 16  # dataset_info reads are I/O bound (GCS round trips)


@dataclasses.dataclass(frozen=True)
class BuilderDir:
    """A builder dir found on disk (not yet opened)."""

    tfds_name: str
    config: str
    version: str
    path: str  # a local path or URL, in the form the data dir was given


def existing_dir(path: str, *, what: str) -> str:
    """`path` (without a trailing slash) when it is a directory; a ValueError otherwise."""
    root = path.rstrip("/") or path
    if not url_exists(root):
        raise ValueError(f"{what} does not exist: looked in {root}")
    if not url_is_dir(root):
        raise ValueError(f"{what} is not a directory: {root}")
    return root


def find_builder_dirs(base: str, tfds_name: str | None) -> list[BuilderDir]:
    """Builder dirs under `base`: `<config>/<version>` (or `<name>/<config>/<version>` etc.)."""
    if not url_exists(base):
        return []
    patterns = (
        [f"*/*/{DATASET_INFO_FILE}", f"*/{DATASET_INFO_FILE}"]
        if tfds_name is not None
        else [f"*/*/*/{DATASET_INFO_FILE}", f"*/*/{DATASET_INFO_FILE}"]
    )
    found = []
    for pattern in patterns:
        for info in glob_relative(base, pattern):
            parent = info.rsplit("/", 1)[0]
            # TFDS writes into `incomplete.*` dirs and renames them when done.
            if not parent.rsplit("/", 1)[-1].startswith(_INCOMPLETE_PREFIX):
                found.append(builder_dir_from_info(join_url(base, parent)))
    # The config-less pattern also sees `<config>/<version>` one level short; keep real ones.
    unique = {b.path: b for b in found}
    return sorted(unique.values(), key=lambda b: (b.tfds_name, b.config, b.version))


def builder_dir_from_info(path: str) -> BuilderDir:
    """Name, config and version from a builder dir's dataset_info.json."""
    name, config, version = read_info_names(path)
    return BuilderDir(tfds_name=name, config=config, version=version, path=path)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def pick_versions(found: Iterable[BuilderDir], version: str | None) -> list[BuilderDir]:
    """One builder dir per (name, config): the required version, else the newest."""
    best: dict[tuple[str, str], BuilderDir] = {}
    for b in found:
        if version is not None and b.version != version:
            continue
        key = (b.tfds_name, b.config)
        if key not in best or _version_key(b.version) > _version_key(best[key].version):
            best[key] = b
    return [best[k] for k in sorted(best)]


def known_tasks(spec: DatasetSpec) -> list[str]:
    """Task names the TFDS builder classes define (empty for project-recorded datasets)."""
    if not spec.config_builders:
        return []
    return [
        task_name(name, config.name)
        for name in spec.tfds_names
        for config in tfds_builder_cls(name).BUILDER_CONFIGS
    ]


def tfds_builder_cls(name: str) -> type:
    """TFDS's builder class `name`, with or without TensorFlow installed.

    Without TensorFlow, `import tensorflow_datasets` registers TFDS's own builders only up to
    the first of its dataset modules that needs TF (`registered._import_legacy_builders`
    stops there), which comes before RL Unplugged's; so a name not found is looked up again
    after importing the RL Unplugged builders, which need no TF to be defined.
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.builder_cls(name)
    except tfds.core.registered.DatasetNotFoundError:
        importlib.import_module("tensorflow_datasets.rl_unplugged")
        return tfds.builder_cls(name)


def listing(names: Sequence[str]) -> str:
    """At most MAX_LISTED_NAMES names, then the count."""
    if not names:
        return "none"
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    more = ", ..." if len(names) > MAX_LISTED_NAMES else ""
    return f"[{shown}{more}] ({len(names)} in all)"


def select_builders(
    on_disk: list[BuilderDir],
    globs: Sequence[str],
    *,
    dataset: str,
    where: str,
    known: list[str],
    other_versions: list[str],
    version: str | None,
) -> list[BuilderDir]:
    """The builder dirs whose config (or task name) matches any glob; every glob must match."""
    def matches(b: BuilderDir, pattern: str) -> bool:
        return fnmatch.fnmatchcase(b.config, pattern) or fnmatch.fnmatchcase(
            task_name(b.tfds_name, b.config), pattern
        )

    selected: dict[str, BuilderDir] = {}
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
            selected[b.path] = b
    if problems:
        message = "; ".join(problems) + f". Tasks on disk: {listing(tasks_on_disk)}"
        if not tasks_on_disk and other_versions:
            message += f"; found other versions only: {listing(other_versions)}"
        if known:
            message += f"; known tasks: {listing(known)}"
        raise ValueError(message)
    return sorted(selected.values(), key=lambda b: (b.tfds_name, b.config))


def load_infos(builders: Sequence[BuilderDir]) -> list[BuilderInfo]:
    """The metadata of each builder dir (read concurrently: object-store round trips)."""

    def load(b: BuilderDir) -> BuilderInfo:
        try:
            return read_builder_info(b.path)
        except Exception as e:  # noqa: BLE001 - any unreadable metadata is one start-up error
            raise ValueError(f"cannot open TFDS builder dir {b.path}: {e}") from e

    with concurrent.futures.ThreadPoolExecutor(_INFO_THREADS) as pool:
        return list(pool.map(load, builders))


def train_shards(info: BuilderInfo, builder_dir: str) -> list[str]:
    splits = info.splits
    if TRAIN_SPLIT not in splits:
        raise ValueError(
            f"{builder_dir} has no {TRAIN_SPLIT!r} split; splits: {sorted(splits.keys())}"
        )
    paths = list(splits[TRAIN_SPLIT].filepaths)
    # One listing per builder dir, not one stat per shard (hundreds of shards on GCS).
    present = list_names(builder_dir)
    missing = [p for p in paths if p.rsplit("/", 1)[-1] not in present]
    if missing:
        raise ValueError(
            f"{builder_dir}: {len(missing)} of {len(paths)} {TRAIN_SPLIT} shards listed in "
            f"{DATASET_INFO_FILE} are missing, e.g. {missing[0]}"
        )
    return paths


def train_shard_lengths(info: BuilderInfo) -> dict[str, int]:
    """Records per train shard, by path: dataset_info.json's `shardLengths`, in shard
    order, as `filepaths` is."""
    split = info.splits[TRAIN_SPLIT]
    return dict(zip(split.filepaths, split.shard_lengths))
