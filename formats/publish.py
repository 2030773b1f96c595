"""Publishing a finished output: verify what the manifest lists, then make it visible.

`publish_output(output_dir, payload, shards=...)` is the last write of a job
(`formats.manifest.write_manifest` calls it with the manifest's bytes):

1. Ownership: when `output_dir` is a staging directory `<root>/_staging/<run id>`
   (`formats/layout.py`), the claim on `<root>` must still name that run
   (`formats.claim.check_claim`); a directory written without a claim must not be claimed
   by another job (`refuse_if_claimed`).
2. Every listed shard exists under `output_dir` with the bytes the manifest records
   (`ManifestMismatchError` otherwise), checked from one listing per directory, never by
   reading a shard: each shard's sha256 and bytes were measured while it was written
   (`formats.files.HashingWriter`). Shards under a run's staging directory were written by
   that run (the claim): nothing else writes there, so a listed file that changed since
   has been damaged from outside. A change of size is caught here; a same-size change is
   caught by whoever reads the bytes, `gato-audit` (`audit/verify.py`) and the reader
   (`reader/checksum.py`), which both check every shard's sha256.
3. `_tmp/` goes, then the manifest is written atomically (temporary name, then rename).
   From a staging directory, the switch happens only now: the old `manifest.json` (if any)
   is removed first, so the root reads as unfinished while files move; the staged files
   take their final names (the layout of a finished output is unchanged), moved in
   parallel (`_MOVE_THREADS`: on an object store a move is a server-side copy), all of
   them before anything else happens; files of the old output that the new one does not
   have are removed; `manifest.json` is written last; the staging directory is removed.
   Until step 3 the old output is untouched, so a run that fails leaves it valid and
   readable.

Nothing random enters the published files: the run id is only in the claim and the path.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec

from formats.claim import check_claim, refuse_if_claimed
from formats.files import move_file, output_filesystem, raise_if_no_space
from formats.layout import PUBLISHED, list_output, manifest_temp_name, remove_empty_dirs, split_staging
from schemas.output import MANIFEST_FILE, OUTPUT_SUBDIRS, S_BYTES, S_PATH, STAGING_DIR, TMP_DIR

_LIST_THREADS = 8
_MOVE_THREADS = 16
_NAMED = 5


class ManifestMismatchError(ValueError):
    """A shard the manifest lists is missing or differs from its recorded bytes."""


def _in_parallel(function: Callable[[Any], Any], items: Iterable[Any], *, threads: int) -> list[Any]:
    """`function` of every item, on a thread pool; returns once all are done (the first
    error is raised then, after every other call has finished)."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        futures = [pool.submit(function, item) for item in items]
    return [future.result() for future in futures]


def _file_sizes(fs: fsspec.AbstractFileSystem, directory: str) -> dict[str, int]:
    """{name: bytes} of the files directly in `directory`, from one listing ({} if it is missing)."""
    fs.invalidate_cache(directory)  # a cached listing may predate the files (gcsfs, s3fs)
    try:
        listed = fs.ls(directory, detail=True)
    except FileNotFoundError:
        return {}
    return {posixpath.basename(info["name"].rstrip("/")): int(info["size"]) for info in listed
            if info.get("type") == "file"}


def _mismatch(shard: Mapping[str, Any], sizes: Mapping[str, int]) -> str | None:
    size = sizes.get(posixpath.basename(shard[S_PATH]))
    if size is None:
        return f"{shard[S_PATH]} is missing"
    if S_BYTES in shard and size != shard[S_BYTES]:
        return f"{shard[S_PATH]} has {size} bytes, the manifest says {shard[S_BYTES]}"
    return None


def verify_shards(output_dir: str, shards: Sequence[Mapping[str, Any]]) -> None:
    """Raises `ManifestMismatchError` unless every shard exists with its bytes (module
    docstring, step 2). One listing per directory; no shard is opened."""
    fs, root = output_filesystem(output_dir)
    directories = sorted({posixpath.dirname(f"{root}/{shard[S_PATH]}") for shard in shards})
    listings = dict(zip(directories, _in_parallel(lambda d: _file_sizes(fs, d), directories, threads=_LIST_THREADS)))
    problems = [
        problem for shard in shards
        if (problem := _mismatch(shard, listings[posixpath.dirname(f"{root}/{shard[S_PATH]}")]))
    ]
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
    for directory in sorted({posixpath.dirname(f"{root}/{relative}") for relative in new}):
        with raise_if_no_space(directory):
            fs.makedirs(directory, exist_ok=True)  # once each, before the moves that need it

    def move(relative: str) -> None:
        with raise_if_no_space(f"{root}/{relative}"):
            move_file(fs, f"{stage}/{relative}", f"{root}/{relative}")

    _in_parallel(move, new, threads=_MOVE_THREADS)
    _in_parallel(lambda relative: fs.rm(f"{root}/{relative}"), sorted(old - set(new)), threads=_MOVE_THREADS)
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
