"""Publishing a finished output: verify what the manifest lists, then make it visible.

`publish_output(output_dir, payload, shards=...)` is the last write of a job
(`formats.manifest.write_manifest` calls it with the manifest's bytes):

1. Ownership: when `output_dir` is a staging directory `<root>/_staging/<run id>`
   (`formats/layout.py`), the claim on `<root>` must still name that run
   (`formats.claim.check_claim`); a directory written without a claim must not be claimed
   by another job (`refuse_if_claimed`).
2. Every listed shard exists under `output_dir` with the bytes and sha256 the manifest
   records (`ManifestMismatchError` otherwise). Shards under a run's staging directory were
   written by that run: nothing else writes there.
3. `_tmp/` goes, then the manifest is written atomically (temporary name, then rename).
   From a staging directory, the switch happens only now: the old `manifest.json` (if any)
   is removed first, so the root reads as unfinished while files move; the staged files
   take their final names (the layout of a finished output is unchanged); files of the
   old output that the new one does not have are removed; `manifest.json` is written
   last; the staging directory is removed. Until step 3 the old output is untouched, so a
   run that fails leaves it valid and readable.

Nothing random enters the published files: the run id is only in the claim and the path.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec

from formats.claim import check_claim, refuse_if_claimed
from formats.files import move_file, output_filesystem, raise_if_no_space, sha256_and_size
from formats.layout import PUBLISHED, list_output, manifest_temp_name, remove_empty_dirs, split_staging
from schemas.output import MANIFEST_FILE, OUTPUT_SUBDIRS, S_BYTES, S_PATH, S_SHA256, STAGING_DIR, TMP_DIR

_HASH_THREADS = 8
_NAMED = 5


class ManifestMismatchError(ValueError):
    """A shard the manifest lists is missing or differs from its recorded bytes or sha256."""


def _mismatch(fs: fsspec.AbstractFileSystem, root: str, shard: Mapping[str, Any]) -> str | None:
    path = f"{root}/{shard[S_PATH]}"
    if not fs.exists(path):
        return f"{shard[S_PATH]} is missing"
    if S_SHA256 not in shard:
        return None
    sha, size = sha256_and_size(fs, path)
    if sha != shard[S_SHA256] or (S_BYTES in shard and size != shard[S_BYTES]):
        return f"{shard[S_PATH]} has sha256 {sha[:12]}... and {size} bytes, the manifest says {shard[S_SHA256][:12]}..."
    return None


def verify_shards(output_dir: str, shards: Sequence[Mapping[str, Any]]) -> None:
    """Raises `ManifestMismatchError` unless every shard exists with its bytes and sha256."""
    fs, root = output_filesystem(output_dir)
    with ThreadPoolExecutor(max_workers=_HASH_THREADS) as pool:
        problems = [p for p in pool.map(lambda s: _mismatch(fs, root, s), shards) if p]
    if problems:
        more = f" and {len(problems) - _NAMED} more" if len(problems) > _NAMED else ""
        raise ManifestMismatchError(
            f"{output_dir}: the manifest does not match the files ({'; '.join(problems[:_NAMED])}{more}); "
            "not published"
        )


def _write_atomically(fs: fsspec.AbstractFileSystem, root: str, payload: bytes) -> str:
    final = f"{root}/{MANIFEST_FILE}"
    temp = f"{root}/{manifest_temp_name(uuid.uuid4().hex)}"
    with raise_if_no_space(final):
        with fs.open(temp, "wb") as f:
            f.write(payload)
        move_file(fs, temp, final)
    return final


def _switch(fs: fsspec.AbstractFileSystem, root: str, stage: str, payload: bytes) -> str:
    """Replace the output at `root` by the one staged at `stage` (module docstring, step 3)."""
    old = {r for r, kind in list_output(fs, root).items() if kind == PUBLISHED}
    new = sorted(r for r, kind in list_output(fs, stage).items() if kind == PUBLISHED)
    if fs.exists(f"{root}/{MANIFEST_FILE}"):
        fs.rm(f"{root}/{MANIFEST_FILE}")  # from here the root reads as unfinished, never mixed
    for relative in new:
        target = f"{root}/{relative}"
        with raise_if_no_space(target):
            fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            move_file(fs, f"{stage}/{relative}", target)
    for relative in sorted(old - set(new)):
        fs.rm(f"{root}/{relative}")
    remove_empty_dirs(fs, root, OUTPUT_SUBDIRS)
    final = _write_atomically(fs, root, payload)
    if fs.exists(stage):  # an object store has no empty directories: nothing may be left of it
        fs.rm(stage, recursive=True)
    remove_empty_dirs(fs, root, (STAGING_DIR,))
    return final


def publish_output(output_dir: str, payload: bytes, *, shards: Sequence[Mapping[str, Any]]) -> str:
    """Verify, then publish the manifest `payload` of the output at `output_dir` (module
    docstring); returns the published manifest's path."""
    staged = split_staging(output_dir)
    if staged is not None:
        check_claim(staged[0], staged[1])
    else:
        refuse_if_claimed(output_dir)
    verify_shards(output_dir, shards)
    fs, path = output_filesystem(output_dir)
    if fs.exists(f"{path}/{TMP_DIR}"):
        fs.rm(f"{path}/{TMP_DIR}", recursive=True)
    if staged is None:
        return _write_atomically(fs, path, payload)
    _, root = output_filesystem(staged[0])
    check_claim(staged[0], staged[1])  # verification may take a while: ask again just before the switch
    return _switch(fs, root, path, payload)
