"""Start-up planning of a vision-language or text job (spec section 8): dataset name,
format and field mapping -> one work item per input file (or tar shard, or TFDS shard).

Everything wrong with the request is one ValueError before any worker starts: an unknown
dataset or format, a bad `--fields` entry or spec file, no input files, and images given
only as URLs (`formats.vl_read.find_url_only`: a worker never touches the network).

Where the files are: `<data_dir>/<data_subdir>` (the registry's directory, as the
bundled samples lay them out) when it exists, else `<data_dir>` itself; TFDS data is
found like the RLDS data (`<dir>/coco_captions/<config>/<version>`, or a builder dir).
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from collections.abc import Mapping, Sequence

from formats.files import join_url, read_bytes, url_exists
from formats.vl_read import find_url_only, vl_input_files
from planning.tfds_dirs import (
    existing_dir,
    find_builder_dirs,
    load_infos,
    pick_versions,
    train_shard_lengths,
    train_shards,
)
from schemas.vl import (
    FORMAT_TFDS,
    FORMATS,
    MAPPING_KEYS,
    FieldMapping,
    VLDatasetSpec,
    get_vl_dataset,
)
from transforms.episode import WorkItem

log = logging.getLogger(__name__)
TFDS_COCO_CAPTIONS = "coco_captions"  # the TFDS builder the tfds format reads
_SPEC_KEYS = frozenset({"format", "fields"})


@dataclasses.dataclass(frozen=True)
class VLPlan:
    """A resolved vision-language dataset. Invariants: `work_items[i].index == i`, sorted
    by path; every item's dataset and task are the spec's."""

    dataset: VLDatasetSpec
    format: str
    mapping: FieldMapping
    work_items: tuple[WorkItem, ...]

    @property
    def tasks(self) -> list[str]:
        return [self.dataset.task]


def parse_field_overrides(entries: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """`("image=jpg", "captions=caption|text")` -> {part: names}; ValueError on a bad entry."""
    overrides: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        part, sep, names = entry.partition("=")
        part = part.strip()
        if not sep or not part or not names.strip():
            raise ValueError(f"--fields entry {entry!r}: expected <part>=<name>[|<name>...]")
        if part not in MAPPING_KEYS:
            raise ValueError(f"--fields entry {entry!r}: unknown part {part!r}; known: {list(MAPPING_KEYS)}")
        overrides[part] = tuple(n.strip() for n in names.split("|") if n.strip())
    return overrides


def read_vl_spec(path: str) -> tuple[str | None, dict[str, tuple[str, ...]]]:
    """A spec file (TOML): `format = "webdataset"` and a `[fields]` table of part = name or
    [names]; -> (format, overrides). Unknown keys are a ValueError naming the file."""
    try:
        spec = tomllib.loads(read_bytes(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"--vl_spec={path}: cannot read it as TOML ({e})") from None
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ValueError(f"--vl_spec={path}: unknown keys {unknown}; known: {sorted(_SPEC_KEYS)}")
    fields = spec.get("fields", {})
    if not isinstance(fields, Mapping):
        raise ValueError(f"--vl_spec={path}: [fields] must be a table of part = name or [names]")
    entries = [f"{k}={v if isinstance(v, str) else '|'.join(map(str, v))}" for k, v in fields.items()]
    try:
        overrides = parse_field_overrides(entries)
    except ValueError as e:
        raise ValueError(f"--vl_spec={path}: {e}") from None
    return spec.get("format"), overrides


def resolve_mapping(
    spec: VLDatasetSpec, *, format: str | None, fields: Sequence[str], vl_spec: str | None
) -> tuple[str, FieldMapping]:
    """The format and mapping in force: registry defaults, then the spec file, then flags."""
    file_format, file_fields = read_vl_spec(vl_spec) if vl_spec else (None, {})
    chosen = format or file_format or spec.default_format
    if chosen not in FORMATS:
        raise ValueError(f"--format={chosen}: unknown format; known: {list(FORMATS)}")
    mapping = spec.mapping.replace(file_fields).replace(parse_field_overrides(fields))
    return chosen, mapping


def input_root(data_dir: str, spec: VLDatasetSpec) -> str:
    """`<data_dir>/<data_subdir>` when it exists, else `<data_dir>` (module doc)."""
    root = existing_dir(data_dir, what=f"data dir of dataset {spec.name!r}")
    sub = join_url(root, spec.data_subdir)
    return sub if url_exists(sub) else root


def _tfds_files(root: str) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """[(builder dir, shard path)] and records per shard of every coco_captions config."""
    base = join_url(root, TFDS_COCO_CAPTIONS)
    found = find_builder_dirs(base if url_exists(base) else root, TFDS_COCO_CAPTIONS)
    builders = sorted(pick_versions(found, None), key=lambda b: b.path)
    files: list[tuple[str, str]] = []
    records: dict[str, int] = {}
    for builder, info in zip(builders, load_infos(builders)):
        files.extend((builder.path, path) for path in train_shards(info, builder.path))
        records.update(train_shard_lengths(info))
    return files, records


def plan_vl_work(
    dataset: str,
    *,
    data_dir: str,
    format: str | None = None,
    fields: Sequence[str] = (),
    vl_spec: str | None = None,
) -> VLPlan:
    """Resolve a vision-language dataset to a VLPlan (module doc)."""
    spec = get_vl_dataset(dataset)
    chosen, mapping = resolve_mapping(spec, format=format, fields=fields, vl_spec=vl_spec)
    root = input_root(data_dir, spec)
    if chosen == FORMAT_TFDS:
        files, records = _tfds_files(root)
    else:
        files, records = [(root, path) for path in vl_input_files(root, format=chosen)], {}
    if not files:
        raise ValueError(
            f"dataset {dataset!r}: no {chosen} input files under {root}; "
            "give --data_dir, or --format if the files are in another format"
        )
    problem = find_url_only(files[0][1], kind=spec.kind, format=chosen, mapping=mapping)
    if problem:
        raise ValueError(f"dataset {dataset!r}: {problem}")
    items = tuple(
        WorkItem(
            dataset=spec.name, task=spec.task, builder_dir=builder_dir, shard_path=path, index=i,
            expected_records=records.get(path), data_root=root,
        )
        for i, (builder_dir, path) in enumerate(sorted(files, key=lambda f: f[1]))
    )
    log.info("dataset %s (%s, %s): %d input files under %s", dataset, spec.kind, chosen, len(items), root)
    return VLPlan(dataset=spec, format=chosen, mapping=mapping, work_items=items)
