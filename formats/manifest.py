"""The manifest (spec section 6): what a finished output holds, written last.

`build_manifest` gathers the configuration and its hash, the vocabulary layout, sequence
length, image normalization, per-field specs and per-timestep shapes, suggested sampling
weights, the shard lists (sorted by path; each shard with rows, tokens, bytes and
sha256, measured while each shard was written) and the statistics files. `write_manifest`
checks the run's claim and that every listed shard is there with its bytes (from
directory listings: no shard is read again), removes `_tmp/` and then writes `manifest.json` atomically
(temporary name, then rename; from a staging directory it switches the output into place,
`formats/publish.py`), so an output directory is finished exactly when the file exists. `read_manifest` is the one reader of manifest
files (`reader/`, tests), given an output directory or its manifest.json: no
manifest is an `UnfinishedOutputError`; one that is not JSON, lacks a required key or
has another format version is a ValueError naming the file.

Determinism: `canonical_json` (sorted keys, no whitespace, no NaN) gives the same text
for the same value, and `config_hash` is its sha256. Sampling weights: a dataset's comes
from its registry entry (Gato's Table 1, its share of the whole mix, not rescaled: readers
renormalize over what they read), else the mean of the given ones; tasks within a dataset
are weighted by tokens and sum to 1.

All file access goes through fsspec, so `gs://bucket/out` works like a local path.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec

from formats.publish import publish_output
from schemas.fields import FieldSpec
from schemas.output import (
    M_CARD,
    M_CONFIG,
    M_CONFIG_HASH,
    M_FIELD_SHAPES,
    M_FIELDS,
    M_FORMAT_VERSION,
    M_IMAGE_NORMALIZATION,
    M_REJECTS,
    M_SAMPLING_WEIGHTS,
    M_SEQUENCE_LENGTH,
    M_SHARDS,
    M_STATS,
    M_VOCABULARY,
    MANIFEST_FILE,
    MANIFEST_FORMAT_VERSION,
    S_DATASET,
    S_PATH,
    S_ROWS,
    S_TASK,
    S_TOKENS,
)
from schemas.vocab import IMAGE_NORMALIZATION, VocabLayout


class UnfinishedOutputError(ValueError):
    """The directory holds no manifest: no output, or a job that did not finish."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of the configuration."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def fields_metadata(fields: Mapping[str, Mapping[str, FieldSpec]]) -> dict[str, dict[str, Any]]:
    """{dataset: {field path: FieldSpec.to_metadata()}}, sorted for stable output."""
    return {
        dataset: {path: spec.to_metadata() for path, spec in sorted(specs.items())}
        for dataset, specs in sorted(fields.items())
    }


def suggested_sampling_weights(
    shards: Sequence[Mapping[str, Any]],
    dataset_weights: Mapping[str, float | None],
) -> dict[str, dict[str, Any]]:
    """{dataset: {"weight": w, "tasks": {task: w}}}: each dataset's share of the whole
    training mix, and its tasks' shares within it (they sum to 1).

    A dataset's weight is its entry in `dataset_weights` (Gato's Table 1 where the dataset
    is in it: atari 0.095, coco_captions 0.0067, ...), as it is, not rescaled within this
    output: a reader over several outputs renormalizes over the datasets it reads, so one
    output per dataset mixes by Table 1. A dataset without one gets the mean of the given
    weights (1 if none is given). Within a dataset, tasks are weighted by their
    (non-padding) tokens.
    """
    tokens: dict[str, dict[str, int]] = {}
    for shard in shards:
        per_task = tokens.setdefault(shard[S_DATASET], {})
        per_task[shard[S_TASK]] = per_task.get(shard[S_TASK], 0) + int(shard[S_TOKENS])
    given = [
        float(w) for d, w in dataset_weights.items() if d in tokens and w is not None
    ]
    default = sum(given) / len(given) if given else 1.0
    raw = {d: dataset_weights.get(d) for d in sorted(tokens)}
    raw = {d: default if w is None else float(w) for d, w in raw.items()}
    if any(not math.isfinite(w) or w < 0 for w in raw.values()):
        raise ValueError(f"sampling weights must be finite and >= 0, got {raw}")
    result: dict[str, dict[str, Any]] = {}
    for dataset, per_task in sorted(tokens.items()):
        task_total = sum(per_task.values())
        result[dataset] = {
            "weight": raw[dataset],
            "tasks": {
                task: (n / task_total if task_total > 0 else 0.0)
                for task, n in sorted(per_task.items())
            },
        }
    return result


def build_manifest(
    *,
    config: Mapping[str, Any],
    layout: VocabLayout,
    fields: Mapping[str, Mapping[str, FieldSpec]],
    sequence_length: int,
    shards: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]] = (),
    stats: Mapping[str, str] | None = None,
    dataset_weights: Mapping[str, float | None] | None = None,
    config_digest: str | None = None,
    field_shapes: Mapping[str, Mapping[str, Mapping[str, Sequence[int | None]]]] | None = None,
) -> dict[str, Any]:
    """The manifest object (keys in `schemas.output`); shard lists sorted by path.

    `config_digest` overrides the hash of the whole `config` (the job hashes only the
    options that determine content, so the same data written elsewhere hashes alike).
    `field_shapes` {dataset: {task: {path: shape}}}: what decoding a row back needs.
    """
    config = json.loads(canonical_json(config))  # fails early on anything not JSON
    return {
        M_FORMAT_VERSION: MANIFEST_FORMAT_VERSION,
        M_CONFIG: config,
        M_CONFIG_HASH: config_digest or config_hash(config),
        M_VOCABULARY: layout.to_metadata(),
        M_SEQUENCE_LENGTH: int(sequence_length),
        M_IMAGE_NORMALIZATION: IMAGE_NORMALIZATION,
        M_FIELDS: fields_metadata(fields),
        M_FIELD_SHAPES: {
            dataset: {task: {path: list(shape) for path, shape in sorted(paths.items())}
                      for task, paths in sorted(tasks.items())}
            for dataset, tasks in sorted((field_shapes or {}).items())
        },
        M_SAMPLING_WEIGHTS: suggested_sampling_weights(shards, dataset_weights or {}),
        M_SHARDS: sorted((dict(s) for s in shards), key=lambda s: s["path"]),
        M_REJECTS: sorted((dict(s) for s in rejects), key=lambda s: s["path"]),
        M_STATS: dict(stats or {}),
    }


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """The text of `manifest.json`: sorted keys, one-space indent, no NaN, a final newline."""
    return json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_manifest(output_dir: str, manifest: Mapping[str, Any]) -> str:
    """Publish `manifest.json` (`formats.publish.publish_output`); returns its path.

    Called after every shard is finalized. Checks first that this run still holds the
    output directory's claim and that every listed shard (sequences and rejects) exists
    with its bytes (`formats.publish.verify_shards`); then removes `_tmp/` and writes the manifest atomically
    (temporary name, then rename). From a staging directory `<root>/_staging/<run id>`
    the output is switched into `<root>` and the path of `<root>/manifest.json` returned.
    """
    # The dataset card (`formats/dataset_card.py`) is checked like a shard: path, bytes, sha256.
    card = [manifest[M_CARD]] if M_CARD in manifest else []
    shards = [*manifest.get(M_SHARDS, ()), *manifest.get(M_REJECTS, ()), *card]
    return publish_output(output_dir, manifest_text(manifest).encode("utf-8"), shards=shards)


# Keys every manifest, and every shard entry in it, must have to be read at all.
REQUIRED_KEYS = (M_FORMAT_VERSION, M_VOCABULARY, M_SEQUENCE_LENGTH, M_SHARDS)
REQUIRED_SHARD_KEYS = (S_PATH, S_DATASET, S_TASK, S_ROWS)


def manifest_location(url: str) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """(filesystem, output root, manifest path) of `url`: an output directory or its
    manifest.json, local or any fsspec URL."""
    fs, path = fsspec.core.url_to_fs(url)
    path = path.rstrip("/") or "/"
    if posixpath.basename(path) == MANIFEST_FILE:
        return fs, posixpath.dirname(path), path
    return fs, path, posixpath.join(path, MANIFEST_FILE)


def read_manifest(url: str) -> dict[str, Any]:
    """The manifest of the finished output at `url` (see `manifest_location`).

    The one reader of manifest files (`reader.finished_output.open_output` and the tests use it).
    Raises `UnfinishedOutputError` when there is none (the job writes it last), and a
    ValueError naming the file when it is not JSON, not an object, of another format
    version, or lacks a key of `REQUIRED_KEYS` (or a shard entry one of `REQUIRED_SHARD_KEYS`).
    """
    fs, _, path = manifest_location(url)
    if not fs.exists(path):
        raise UnfinishedOutputError(
            f"{url} has no {MANIFEST_FILE}: it is not a finished output (no {MANIFEST_FILE} at "
            f"{path!r}: the pipeline writes it last, so the job is unfinished, still running or "
            "failed, or the URL is wrong); rerun or finish the job before reading it"
        )
    try:
        with fs.open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{url}: {path!r} is not valid JSON ({e}); the manifest is corrupt") from e
    if not isinstance(manifest, dict):
        raise ValueError(f"{url}: {path!r} holds {type(manifest).__name__}, not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"{url}: manifest lacks the keys {missing}; not an output of this pipeline")
    version = manifest[M_FORMAT_VERSION]
    if version != MANIFEST_FORMAT_VERSION:
        raise ValueError(
            f"{url}: manifest format_version is {version!r}, this code reads "
            f"{MANIFEST_FORMAT_VERSION}; use the reader of the version that wrote it"
        )
    for i, shard in enumerate(manifest[M_SHARDS]):
        lacking = [k for k in REQUIRED_SHARD_KEYS if k not in shard]
        if lacking:
            raise ValueError(f"{url}: shard entry {i} of the manifest lacks the keys {lacking}")
    return manifest
