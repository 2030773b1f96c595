"""Whole-file access under an output directory, through fsspec (local paths and URLs alike).

`output_filesystem`: the filesystem and root (no trailing slash) of an output directory,
for code that checks, moves or removes files under it (`formats/manifest.py`,
`formats/output_dir.py`). `write_bytes`: one whole small file (the statistics, the
report) at a relative path of safe components (`formats.paths.path_under`), its
directories created. `sha256_and_size`: what the manifest records of a file.

A full disk is one clear error wherever we write: `raise_if_no_space(path)` turns an
`OSError` with errno `ENOSPC` (or `EDQUOT`) into `NoSpaceLeftError("no space left on
<path>")`, which `beam_runner.py` prints as one line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
from collections.abc import Iterator

import fsspec

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


def write_bytes(output_dir: str, relative: str, payload: bytes) -> None:
    """Writes `payload` to `output_dir/relative` (local path or URL), creating directories."""
    path = path_under(output_dir, *relative.split("/"))
    fs, local = fsspec.core.url_to_fs(path)
    with raise_if_no_space(path):
        fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(local, "wb") as handle:
            handle.write(payload)


def sha256_and_size(fs: fsspec.AbstractFileSystem, path: str) -> tuple[str, int]:
    """(sha256 hex, bytes) of one file."""
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
