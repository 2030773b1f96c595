"""Whole-file access through fsspec, the one storage layer of the job and the reader.

Every path the job touches (the data dir and its TFDS metadata, the shards it reads, the
output, the text model) is a local path or an fsspec URL (`gs://`, `s3://`, `memory://`,
...) and goes through fsspec, so object stores and local disks behave alike. URLs keep
the form the user gave (a relative local path stays relative): `join_url` appends
components, `glob_relative` and `list_names` answer relative to the URL they were given.

`output_filesystem`: the filesystem and root (no trailing slash) of an output directory,
for code that checks, moves or removes files under it (`formats/manifest.py`,
`formats/output_dir.py`). `write_bytes`: one whole small file (the statistics, the
report) at a relative path of safe components (`formats.paths.path_under`), its
directories created. `HashingWriter`: a file open for writing that hashes the bytes it
passes on, so a writer knows what the manifest records of its file (sha256 and bytes)
without reading it back. `sha256_and_size`: the same figures of a file on disk, read in
full (the reader's and the audit's check).

A full disk is one clear error wherever we write: `raise_if_no_space(path)` turns an
`OSError` with errno `ENOSPC` (or `EDQUOT`) into `NoSpaceLeftError("no space left on
<path>")`, which `beam_runner.py` prints as one line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
from collections.abc import Iterator
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from formats.paths import path_under

NO_SPACE_MESSAGE = "no space left on {path}"
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_HASH_CHUNK = 1 << 20


class NoSpaceLeftError(OSError):
    """The disk (or quota) of an output file is full; args[0] is "no space left on <path>"."""


def no_space_error(path: str) -> NoSpaceLeftError:
    return NoSpaceLeftError(NO_SPACE_MESSAGE.format(path=path))


def is_no_space(error: OSError) -> bool:
    """True for a full disk or quota (`NoSpaceLeftError` included)."""
    return isinstance(error, NoSpaceLeftError) or error.errno in _NO_SPACE_ERRNOS


@contextlib.contextmanager
def raise_if_no_space(path: str) -> Iterator[None]:
    """Re-raises ENOSPC/EDQUOT inside the block as `NoSpaceLeftError` naming `path`."""
    try:
        yield
    except NoSpaceLeftError:
        raise
    except OSError as e:
        if e.errno in _NO_SPACE_ERRNOS:
            raise no_space_error(path) from e
        raise


def output_filesystem(output_dir: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, root path without a trailing slash) of `output_dir`, a path or URL."""
    fs, root = fsspec.core.url_to_fs(output_dir)
    return fs, root.rstrip("/") or "/"


def join_url(url: str, *parts: str) -> str:
    """`url` with `parts` appended, one `/` between each; the URL's own form is kept."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def url_exists(url: str) -> bool:
    fs, path = output_filesystem(url)
    return fs.exists(path)


def url_is_dir(url: str) -> bool:
    """True for a directory (on an object store: a prefix holding objects)."""
    fs, path = output_filesystem(url)
    return fs.isdir(path)


def read_bytes(url: str) -> bytes:
    """The whole file at `url` (small files: metadata, spec files)."""
    fs, path = output_filesystem(url)
    with fs.open(path, "rb") as handle:
        return handle.read()


def glob_relative(url: str, pattern: str) -> list[str]:
    """The paths under `url` matching `pattern` (fsspec glob), relative to `url`, sorted."""
    fs, root = output_filesystem(url)
    prefix = root.rstrip("/") + "/"
    return sorted(p[len(prefix):] for p in fs.glob(prefix + pattern) if p.startswith(prefix))


def list_names(url: str) -> set[str]:
    """The names of the entries directly under the directory `url` (one listing)."""
    fs, root = output_filesystem(url)
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}


def move_file(fs: fsspec.AbstractFileSystem, source: str, target: str) -> None:
    """Moves one file: a rename on a local disk; on an object store a server-side copy,
    then the source removed. Object stores have no rename (gcsfs's `mv` first tries GCS's
    `moveTo`, which only some buckets and no emulator offer, retrying it for ~30 s before
    it falls back to this same copy and delete)."""
    if isinstance(fs, LocalFileSystem):
        fs.mv(source, target)
    else:
        fs.copy(source, target)
        fs.rm(source)


def write_bytes(output_dir: str, relative: str, payload: bytes) -> None:
    """Writes `payload` to `output_dir/relative` (local path or URL), creating directories."""
    path = path_under(output_dir, *relative.split("/"))
    fs, local = fsspec.core.url_to_fs(path)
    with raise_if_no_space(path):
        fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(local, "wb") as handle:
            handle.write(payload)


class HashingWriter:
    """A binary file open for writing that hashes what it passes on.

    Invariant: `sha256` and `size` describe exactly the bytes the wrapped file accepted,
    in order, so once it is closed they are the file's own figures. Pass it wherever a
    writable file object goes (pyarrow's ParquetWriter included); it closes the wrapped file.
    """

    def __init__(self, file: Any) -> None:
        self._file = file
        self._digest = hashlib.sha256()
        self._size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = self._file.write(view)
        count = view.nbytes if written is None else int(written)
        self._digest.update(view[:count])  # only what the file took: a short write is not hashed twice
        self._size += count
        return count

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return bool(self._file.closed)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def sha256(self) -> str:
        """Hex sha256 of the bytes written so far."""
        return self._digest.hexdigest()

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size


def sha256_and_size(fs: fsspec.AbstractFileSystem, path: str) -> tuple[str, int]:
    """(sha256 hex, bytes) of one file."""
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
