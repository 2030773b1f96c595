"""The output directory's life cycle (spec section 6): prepared first, shards moved in at the end.

An output directory is *finished* exactly when it holds `manifest.json`, which
`formats/manifest.py` writes last, atomically, after every shard is in its final place.
So a crashed job leaves no manifest, and readers refuse such a directory.

- `prepare_output_dir` at start-up: refuses a finished output unless `overwrite`
  (`FinishedOutputError`, a ValueError); otherwise removes the manifest first (a crash
  while cleaning then leaves an unfinished directory), then our own sub-directories and
  the report, so that a rerun starts afresh. Files of others are left alone.
- `finalize_shards` after the write barrier: moves each `ShardEntry` of one kind from
  `_tmp/<kind>/...` to its final name, measures bytes and sha256 for the manifest, and
  deletes `_tmp/<kind>`, which removes the orphans of failed attempts. Idempotent (a
  retry skips shards already moved); two entries with one final path (a work item's rows
  split across bundles) are an error, never a silent overwrite.

All file access goes through fsspec, so `gs://bucket/out` works like a local path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import fsspec

from formats.files import output_filesystem
from formats.parquet_shards import ShardEntry
from formats.paths import path_under
from schemas.output import (
    MANIFEST_FILE,
    OUTPUT_SUBDIRS,
    REPORT_FILE,
    S_BYTES,
    S_DATASET,
    S_PATH,
    S_ROWS,
    S_SHA256,
    S_TASK,
    S_TOKENS,
    TMP_DIR,
)


class FinishedOutputError(ValueError):
    """The output directory already holds a finished output (and --overwrite was not given)."""


def prepare_output_dir(output_dir: str, *, overwrite: bool) -> None:
    """Make `output_dir` ready for a job (module docstring). Files of others are left alone."""
    fs, root = output_filesystem(output_dir)
    manifest = f"{root}/{MANIFEST_FILE}"
    if fs.exists(manifest):
        if not overwrite:
            raise FinishedOutputError(
                f"{output_dir} already holds a finished output ({MANIFEST_FILE} exists); "
                "pass --overwrite to replace it, or choose another --output_dir"
            )
        # Manifest first: if we crash while cleaning, the directory reads as unfinished.
        fs.rm(manifest)
    for name in (*OUTPUT_SUBDIRS, REPORT_FILE):
        path = f"{root}/{name}"
        if fs.exists(path):
            fs.rm(path, recursive=True)
    fs.makedirs(root, exist_ok=True)


_HASH_CHUNK = 1 << 20


def _sha256_and_size(fs: fsspec.AbstractFileSystem, path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def finalize_shards(output_dir: str, entries: Iterable[ShardEntry], *, kind: str) -> list[dict[str, Any]]:
    """Move `kind` shards into their final names; manifest entries sorted by path.

    Idempotent (a retried call skips shards already moved). Afterwards `_tmp/<kind>`,
    with the orphans of failed attempts, is gone. Two entries with one final path mean
    a work item's rows were split across bundles: an error, not a silent overwrite.
    """
    chosen = sorted((e for e in entries if e.kind == kind), key=lambda e: e.path)
    paths = [e.path for e in chosen]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ValueError(
            f"shards written twice: {duplicates[:5]}; one work item's rows must reach "
            "WriteShards in a single bundle (do not reshuffle between Read and Write)"
        )
    fs, root = fsspec.core.url_to_fs(output_dir)
    root = root.rstrip("/")
    result: list[dict[str, Any]] = []
    for entry in chosen:
        _, temp = fsspec.core.url_to_fs(entry.temp_path)
        final = path_under(root, *entry.path.split("/"))
        if fs.exists(temp):
            fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            fs.mv(temp, final)
        elif not fs.exists(final):
            raise FileNotFoundError(f"shard {entry.path} is neither at {temp} nor in place")
        sha, size = _sha256_and_size(fs, final)
        result.append(
            {
                S_PATH: entry.path,
                S_DATASET: entry.dataset,
                S_TASK: entry.task,
                S_ROWS: entry.rows,
                S_TOKENS: entry.tokens,
                S_BYTES: size,
                S_SHA256: sha,
            }
        )
    # Only this kind's temporaries: the other kind may still be writing.
    tmp = f"{root}/{TMP_DIR}/{kind}"
    if fs.exists(tmp):
        fs.rm(tmp, recursive=True)
    return result
