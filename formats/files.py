"""Whole-file access under an output directory, through fsspec (local paths and URLs alike).

`output_filesystem`: the filesystem and root (no trailing slash) of an output directory,
for code that checks, moves or removes files under it (`formats/manifest.py`,
`formats/output_dir.py`). `write_bytes`: one whole small file (the statistics, the
report) at a relative path of safe components (`formats.paths.path_under`), its
directories created.
"""

from __future__ import annotations

import fsspec

from formats.paths import path_under


def output_filesystem(output_dir: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, root path without a trailing slash) of `output_dir`, a path or URL."""
    fs, root = fsspec.core.url_to_fs(output_dir)
    return fs, root.rstrip("/") or "/"


def write_bytes(output_dir: str, relative: str, payload: bytes) -> None:
    """Writes `payload` to `output_dir/relative` (local path or URL), creating directories."""
    path = path_under(output_dir, *relative.split("/"))
    fs, local = fsspec.core.url_to_fs(path)
    fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(local, "wb") as handle:
        handle.write(payload)
