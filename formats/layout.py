"""What this pipeline writes under an output directory, recognised by path alone.

`path_kind(relative)` classifies one file (relative, '/'-separated) of an output
directory:
- `MANIFEST`: `manifest.json`;
- `CLAIM`: the claim file of the job writing the directory (`formats/claim.py`);
- `PUBLISHED`: a file of a finished output's layout (`sequences/<c>/<c>/part-NNNNN-NNN.parquet`,
  `rejects/...` likewise, `stats/stats.parquet`, `stats/stats.json`, `stats/episodes.parquet`,
  `report.html`, `viewer.html`, the dataset card `README.md`);
- `TEMPORARY`: anything under `_tmp/`, and a manifest before its rename
  (`.manifest.json.<hex>.tmp`);
- `STAGED`: anything under `_staging/<run id>/` (a job's output being built);
- `FOREIGN`: anything else, which no code of ours ever deletes.

A job builds its output in `staging_dir(root, run_id)` = `<root>/_staging/<run id>` (the same
layout) and publishes it into `<root>` at the end (`formats/publish.py`); `split_staging`
and `published_dir` map such a path back to its root.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import fsspec

from schemas.output import (
    CARD_FILE,
    CLAIM_FILE,
    MANIFEST_FILE,
    MANIFEST_TEMP_SUFFIX,
    REJECTS_DIR,
    REPORT_FILE,
    SEQUENCES_DIR,
    STAGING_DIR,
    STATS_EPISODES_FILE,
    STATS_JSON_FILE,
    STATS_PARQUET_FILE,
    TMP_DIR,
    VIEWER_FILE,
)

MANIFEST = "manifest"
CLAIM = "claim"
PUBLISHED = "published"
TEMPORARY = "temporary"
STAGED = "staged"
FOREIGN = "foreign"

RUN_ID_PATTERN = r"[0-9a-f]{32}"
_COMPONENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_SHARD = re.compile(
    rf"({SEQUENCES_DIR}|{REJECTS_DIR})/{_COMPONENT}/{_COMPONENT}/part-[0-9]{{5}}-[0-9]{{3}}\.parquet"
)
_FILES = frozenset(
    {STATS_PARQUET_FILE, STATS_JSON_FILE, STATS_EPISODES_FILE, REPORT_FILE, VIEWER_FILE, CARD_FILE}
)
_MANIFEST_TEMP = re.compile(rf"\.{re.escape(MANIFEST_FILE)}\.[0-9a-f]+{re.escape(MANIFEST_TEMP_SUFFIX)}")
_STAGED = re.compile(rf"{STAGING_DIR}/({RUN_ID_PATTERN})(/.+)?")


def is_published_file(relative: str) -> bool:
    """True for a file of a finished output's layout (shards, statistics, report, viewer, card)."""
    return relative in _FILES or _SHARD.fullmatch(relative) is not None


def path_kind(relative: str) -> str:
    """The kind of the file at `relative` (module docstring)."""
    if relative == MANIFEST_FILE:
        return MANIFEST
    if relative == CLAIM_FILE:
        return CLAIM
    if is_published_file(relative):
        return PUBLISHED
    if relative.startswith(f"{TMP_DIR}/") or _MANIFEST_TEMP.fullmatch(relative):
        return TEMPORARY
    if _STAGED.fullmatch(relative):
        return STAGED
    return FOREIGN


def manifest_temp_name(token: str) -> str:
    """The name of a manifest written before its rename (`token`: hex)."""
    return f".{MANIFEST_FILE}.{token}{MANIFEST_TEMP_SUFFIX}"


def staging_dir(root: str, run_id: str) -> str:
    """Where run `run_id` builds its output: `<root>/_staging/<run id>`."""
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise ValueError(f"run id {run_id!r} is not 32 lowercase hex digits")
    return f"{root.rstrip('/')}/{STAGING_DIR}/{run_id}"


def split_staging(path: str) -> tuple[str, str] | None:
    """(root, run id) when `path` is a staging directory (`staging_dir`), else None."""
    match = re.fullmatch(rf"(.+)/{STAGING_DIR}/({RUN_ID_PATTERN})/?", path)
    return (match.group(1), match.group(2)) if match else None


def published_dir(path: str) -> str:
    """The output directory `path` publishes to: its root when it is a staging directory."""
    staged = split_staging(path)
    return staged[0] if staged else path


def list_output(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, str]:
    """{relative path: kind} of every file under `root` (a filesystem path, not a URL)."""
    if not fs.exists(root):
        return {}
    prefix = root.rstrip("/") + "/"
    found = fs.find(root, withdirs=False)
    return {p[len(prefix):]: path_kind(p[len(prefix):]) for p in found if p.startswith(prefix)}


def remove_empty_dirs(fs: fsspec.AbstractFileSystem, root: str, names: Iterable[str]) -> None:
    """Removes the directories under (and including) each `root/name` that hold no file."""
    for name in names:
        top = f"{root}/{name}"
        if not fs.isdir(top):
            continue
        dirs = [d for d, info in fs.find(top, withdirs=True, detail=True).items() if info["type"] == "directory"]
        for path in sorted({*dirs, top}, key=len, reverse=True):
            if fs.isdir(path) and not fs.ls(path, detail=False):
                fs.rmdir(path)
