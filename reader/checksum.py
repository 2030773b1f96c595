"""Shard checksums: a shard's bytes must hash to the sha256 its manifest lists.

Row counts and schema (checked when the index is built) do not catch a shard whose
values changed after the job; the digest does. A shard is hashed the first time a
process reads from it, not at start-up, so time to first batch does not grow with the
dataset; the result is cached per process (shared by every stream and the read-ahead
threads), so each shard is hashed once however many row groups are read.

The cache is keyed by the file's version as well (`fs.checksum`: size, mtime and inode on
local disk, the object's generation or etag on object stores; one stat per shard open), so
a shard replaced after it was verified (a rebuilt output, a partial copy) is hashed again
when it is next opened, never read on the strength of the old file's digest.
"""

from __future__ import annotations

import threading

import fsspec

from formats.files import sha256_and_size

# (shard URL, expected digest, file version) of every shard this process has verified.
_verified: set[tuple[str, str, str]] = set()
# One lock per shard being verified, so two threads never hash the same shard twice
# and threads verifying different shards do not wait for each other.
_pending: dict[tuple[str, str, str], threading.Lock] = {}
_guard = threading.Lock()


def sha256_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Hex sha256 of the file's bytes, streamed in chunks (the writer's own hash)."""
    return sha256_and_size(fs, path)[0]


def verify_shard(fs: fsspec.AbstractFileSystem, path: str, expected: str | None, *, output_url: str) -> None:
    """Return once the shard's bytes hash to `expected`; ValueError naming both digests if not.

    Thread-safe; a shard that verified is not hashed again in this process while its file
    is unchanged (`fs.checksum`). A mismatch is not cached: every later read of that shard
    raises again. Call it after opening the file, so that the handle holds verified bytes.
    """
    if not expected:
        raise ValueError(
            f"{output_url}: the manifest lists no sha256 for shard {path!r}, so it cannot be verified; "
            "rewrite the output with a current pipeline, or set ReaderOptions(verify_checksums=False)"
        )
    try:
        version = str(fs.checksum(path))
    except FileNotFoundError:
        raise ValueError(
            f"{output_url}: shard {path!r} listed in the manifest is gone (the output is being "
            "rebuilt or was deleted)"
        ) from None
    key = (fs.unstrip_protocol(path), str(expected).lower(), version)
    with _guard:
        if key in _verified:
            return
        lock = _pending.setdefault(key, threading.Lock())
    with lock:
        with _guard:
            if key in _verified:  # another thread verified it while this one waited
                return
        found = sha256_of(fs, path)
        if found != key[1]:
            raise ValueError(
                f"{output_url}: shard {path!r} has sha256 {found}, but the manifest lists {key[1]}; "
                "the shard changed after the job wrote it (corrupt copy or partial overwrite). Re-copy "
                "or rewrite the output, or set ReaderOptions(verify_checksums=False) to read it anyway"
            )
        with _guard:
            _verified.add(key)
            _pending.pop(key, None)
