"""The output directory's life cycle (spec section 6): prepared first, shards moved in at the end.

An output directory is *finished* exactly when it holds `manifest.json`, which
`formats/manifest.py` writes last, atomically, after every shard is in its final place.
So a crashed job leaves no manifest, and readers refuse such a directory.

- `prepare_output_dir` at start-up (after `formats.claim.take_claim`): lists the
  directory and classifies every file by our layout (`formats.layout.path_kind`). A file
  we do not know is never deleted: the directory is refused, naming it
  (`ForeignFilesError`). A finished output is refused unless `overwrite`
  (`FinishedOutputError`); with `overwrite` it stays in place, valid and readable, until
  the new run publishes (`formats/publish.py`). Leftovers of earlier runs are removed:
  temporaries (`_tmp/`, `.manifest.json.*.tmp`), staging directories of runs that did
  not finish, and the files of an unfinished output. With a `run_id`, the job's staging
  directory `_staging/<run id>` is made and returned: the job writes there.
- `finalize_shards` after the write barrier: moves each `ShardEntry` of one kind from
  `_tmp/<kind>/...` to its final name, measures bytes and sha256 for the manifest, and
  deletes `_tmp/<kind>`, which removes the orphans of failed attempts. Idempotent (a
  retry skips shards already moved); two entries with one final path (a work item's rows
  split across bundles) are an error, never a silent overwrite.

All file access goes through fsspec, so `gs://bucket/out` works like a local path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import fsspec

from formats.files import move_file, output_filesystem, raise_if_no_space, sha256_and_size
from formats.layout import (
    FOREIGN,
    MANIFEST,
    PUBLISHED,
    STAGED,
    TEMPORARY,
    list_output,
    remove_empty_dirs,
    staging_dir,
)
from formats.parquet_shards import ShardEntry
from formats.paths import path_under
from schemas.output import (
    MANIFEST_FILE,
    OUTPUT_SUBDIRS,
    S_BYTES,
    S_DATASET,
    S_PATH,
    S_ROWS,
    S_SHA256,
    S_TASK,
    S_TOKENS,
    STAGING_DIR,
    TMP_DIR,
)

_NAMED = 5  # foreign files named in the refusal


class FinishedOutputError(ValueError):
    """The output directory already holds a finished output (and --overwrite was not given)."""


class ForeignFilesError(ValueError):
    """The output directory holds files this pipeline did not write."""


def prepare_output_dir(output_dir: str, *, overwrite: bool, run_id: str | None = None) -> str:
    """Make `output_dir` ready for a job (module docstring); returns where the job writes:
    `output_dir` itself, or its staging directory when `run_id` is given."""
    fs, root = output_filesystem(output_dir)
    files = list_output(fs, root)
    foreign = sorted(r for r, kind in files.items() if kind == FOREIGN)
    if foreign:
        more = f" and {len(foreign) - _NAMED} more" if len(foreign) > _NAMED else ""
        raise ForeignFilesError(
            f"{output_dir} holds {len(foreign)} file(s) this pipeline did not write: "
            f"{', '.join(foreign[:_NAMED])}{more}; nothing was deleted: move them away or "
            "choose an empty or new --output_dir"
        )
    finished = MANIFEST in files.values()
    if finished and not overwrite:
        raise FinishedOutputError(
            f"{output_dir} already holds a finished output ({MANIFEST_FILE} exists); "
            "pass --overwrite to replace it, or choose another --output_dir"
        )
    # Leftovers of runs that did not finish; a finished output stays until the new one is published.
    leftovers = {TEMPORARY, STAGED} if finished else {TEMPORARY, STAGED, PUBLISHED}
    for relative in sorted(r for r, kind in files.items() if kind in leftovers):
        fs.rm(f"{root}/{relative}")
    remove_empty_dirs(fs, root, (TMP_DIR, STAGING_DIR, *OUTPUT_SUBDIRS))
    with raise_if_no_space(output_dir):
        fs.makedirs(root, exist_ok=True)
        if run_id is None:
            return output_dir
        target = staging_dir(output_dir, run_id)
        fs.makedirs(f"{root}/{STAGING_DIR}/{run_id}", exist_ok=True)
    return target


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
            with raise_if_no_space(final):
                fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                move_file(fs, temp, final)
        elif not fs.exists(final):
            raise FileNotFoundError(f"shard {entry.path} is neither at {temp} nor in place")
        sha, size = sha256_and_size(fs, final)
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
