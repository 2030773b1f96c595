"""The output directory's life cycle and its manifest (spec section 6).

An output directory is *finished* exactly when it holds `manifest.json`: the manifest
is written last, atomically (temporary name, then rename), after every shard is in its
final place. So a crashed job leaves no manifest, and readers refuse such a directory.

- `prepare_output_dir` at start-up: refuses a finished output unless `overwrite`;
  cleans an unfinished one of our own sub-directories so that a rerun starts afresh.
- `build_manifest` / `write_manifest` at the end; `read_manifest` for consumers.

All file access goes through fsspec, so `gs://bucket/out` works like a local path.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from formats.files import output_filesystem
from schemas.fields import FieldSpec
from schemas.output import (
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
    S_TASK,
    S_TOKENS,
    TMP_DIR,
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
    """{dataset: {"weight": w, "tasks": {task: w}}}; dataset weights sum to 1, and so do
    the task weights of each dataset.

    A dataset's weight is its entry in `dataset_weights` (Gato's Table 1 where the dataset
    is in it); a dataset without one gets the mean of the given weights (1 if none is
    given). Within a dataset, tasks are weighted by their (non-padding) tokens.
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
    total = sum(raw.values())
    result: dict[str, dict[str, Any]] = {}
    for dataset, per_task in sorted(tokens.items()):
        task_total = sum(per_task.values())
        result[dataset] = {
            "weight": raw[dataset] / total if total > 0 else 0.0,
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


def write_manifest(output_dir: str, manifest: Mapping[str, Any]) -> str:
    """Write `manifest.json` atomically (temporary name, then rename); returns its path.

    Called after every shard is finalized, so the temporary-shard directory goes first.
    """
    fs, root = output_filesystem(output_dir)
    if fs.exists(f"{root}/{TMP_DIR}"):
        fs.rm(f"{root}/{TMP_DIR}", recursive=True)
    final = f"{root}/{MANIFEST_FILE}"
    temp = f"{root}/.{MANIFEST_FILE}.{uuid.uuid4().hex}.tmp"
    text = json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    with fs.open(temp, "wb") as f:
        f.write((text + "\n").encode("utf-8"))
    fs.mv(temp, final)
    return final


def read_manifest(output_dir: str) -> dict[str, Any]:
    """The manifest of a finished output; an unfinished directory is an error."""
    fs, root = output_filesystem(output_dir)
    path = f"{root}/{MANIFEST_FILE}"
    if not fs.exists(path):
        raise UnfinishedOutputError(
            f"{output_dir} has no {MANIFEST_FILE}: it is not a finished output "
            "(the job did not run or did not finish); rerun the job"
        )
    with fs.open(path, "rb") as f:
        manifest = json.loads(f.read().decode("utf-8"))
    version = manifest.get(M_FORMAT_VERSION)
    if version != MANIFEST_FORMAT_VERSION:
        raise ValueError(
            f"{path}: manifest format version {version!r}, this code reads "
            f"{MANIFEST_FORMAT_VERSION}"
        )
    return manifest
