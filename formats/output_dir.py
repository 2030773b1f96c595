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
- After the write barrier, shards move into place: `move_shard` moves one `ShardEntry`
  from `_tmp/<kind>/...` to its final name and returns its manifest entry, with the bytes
  and sha256 the writer measured while writing (no shard is read again). It is
  idempotent (a retry finds the shard already moved), so the job runs it as one element
  per shard, in parallel (`pipeline/write_shards.py`). `duplicate_paths` names final
  paths two entries share (a work item's rows split across bundles): an error, never a
  silent overwrite. `remove_temporaries` then deletes `_tmp/<kind>`, with the orphans of
  failed attempts. `finalize_shards` is the three in one call, for callers without Beam.

All file access goes through fsspec, so `gs://bucket/out` works like a local path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import fsspec

from formats.files import move_file, output_filesystem, raise_if_no_space
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


def duplicate_paths(entries: Iterable[ShardEntry]) -> list[str]:
    """The final paths more than one entry names, sorted."""
    seen: set[str] = set()
    twice: set[str] = set()
    for entry in entries:
        (twice if entry.path in seen else seen).add(entry.path)
    return sorted(twice)


def written_twice_error(paths: Sequence[str]) -> ValueError:
    """The error for shards two entries name (`duplicate_paths`)."""
    return ValueError(
        f"shards written twice: {list(paths[:5])}; one work item's rows must reach "
        "WriteShards in a single bundle (do not reshuffle between Read and Write)"
    )


def manifest_entry(entry: ShardEntry) -> dict[str, Any]:
    """What the manifest lists of a shard (keys `S_*`)."""
    return {
        S_PATH: entry.path,
        S_DATASET: entry.dataset,
        S_TASK: entry.task,
        S_ROWS: entry.rows,
        S_TOKENS: entry.tokens,
        S_BYTES: entry.bytes,
        S_SHA256: entry.sha256,
    }


def move_shard(output_dir: str, entry: ShardEntry) -> dict[str, Any]:
    """Move one shard from its temporary place to its final name; its manifest entry.

    Idempotent: a shard already moved (a retry) is left in place. The file is never
    opened: bytes and sha256 are the writer's (`ShardEntry`).
    """
    fs, root = output_filesystem(output_dir)
    _, temp = fsspec.core.url_to_fs(entry.temp_path)
    final = path_under(root, *entry.path.split("/"))
    if fs.exists(temp):
        with raise_if_no_space(final):
            fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            move_file(fs, temp, final)
    elif not fs.exists(final):
        raise FileNotFoundError(f"shard {entry.path} is neither at {temp} nor in place")
    return manifest_entry(entry)


def remove_temporaries(output_dir: str, *, kind: str) -> None:
    """Delete `_tmp/<kind>` (the orphans of failed attempts); only this kind's: the other
    kind may still be writing."""
    fs, root = output_filesystem(output_dir)
    tmp = f"{root}/{TMP_DIR}/{kind}"
    if fs.exists(tmp):
        fs.rm(tmp, recursive=True)


def finalize_shards(output_dir: str, entries: Iterable[ShardEntry], *, kind: str) -> list[dict[str, Any]]:
    """Move `kind` shards into their final names; manifest entries sorted by path.

    Idempotent (a retried call skips shards already moved). Afterwards `_tmp/<kind>`,
    with the orphans of failed attempts, is gone. Two entries with one final path mean
    a work item's rows were split across bundles: an error, not a silent overwrite.
    """
    chosen = sorted((e for e in entries if e.kind == kind), key=lambda e: e.path)
    duplicates = duplicate_paths(chosen)
    if duplicates:
        raise written_twice_error(duplicates)
    result = [move_shard(output_dir, entry) for entry in chosen]
    remove_temporaries(output_dir, kind=kind)
    return result
