"""`gato-audit`'s verification: does a finished output hold what its manifest and stats say?

`verify_output` returns one line per problem (empty: the output is whole):
- the manifest: readable (`formats.manifest.read_manifest`), no shard listed twice;
- every listed shard (sequences and rejects): exists, has the listed bytes and sha256,
  and its Parquet footer holds the listed rows;
- no `.parquet` file under `sequences/` or `rejects/` that the manifest does not list
  (another job's shards mixed in);
- the statistics files the manifest lists exist, and the dataset card has its listed bytes and sha256;
- per task (`stats/stats.json`): episodes read = kept + dropped + rejected, and the
  sequences the stats count are the rows the manifest lists for the task.
Each shard is read once, streamed; nothing is written.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import pyarrow.parquet as pq

from formats.files import sha256_and_size
from formats.manifest import manifest_location, read_manifest
from schemas import output as out


def book_problems(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per task: read = kept + dropped + rejected, else a line with the four numbers."""
    problems = []
    for r in records:
        read, kept, dropped, rejected = (r.get(k) for k in (out.ST_EPISODES_READ, out.ST_KEPT, out.ST_DROPPED, out.ST_REJECTED))
        numbers = (read, kept, dropped, rejected)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            problems.append(f"{r.get(out.DATASET)} / {r.get(out.TASK)}: stats counts {numbers} are not all integers")
        elif read != kept + dropped + rejected:
            problems.append(
                f"{r[out.DATASET]} / {r[out.TASK]}: {read} episodes read but kept {kept} + dropped {dropped} + "
                f"rejected {rejected} = {kept + dropped + rejected}: episodes lost or counted twice"
            )
    return problems


def _shard_problems(fs: fsspec.AbstractFileSystem, root: str, key: str, shard: Mapping[str, Any]) -> list[str]:
    relative = str(shard[out.S_PATH])
    where = f"{key} shard {relative}"
    path = posixpath.join(root, relative)
    if relative.startswith("/") or ".." in relative.split("/"):
        return [f"{where}: not a relative path inside the output directory"]
    if not fs.isfile(path):
        return [f"{where}: listed in the manifest but missing"]
    problems = []
    size = fs.size(path)
    if out.S_BYTES in shard and size != shard[out.S_BYTES]:
        problems.append(f"{where}: {size} bytes, the manifest lists {shard[out.S_BYTES]}")
    listed = shard.get(out.S_SHA256)
    found, _ = sha256_and_size(fs, path)
    if not listed:
        problems.append(f"{where}: the manifest lists no sha256")
    elif found != str(listed).lower():
        problems.append(f"{where}: sha256 {found}, the manifest lists {listed}")
    try:
        with fs.open(path, "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
    except Exception as e:  # noqa: BLE001 - any unreadable footer is a problem to report, not a crash
        return [*problems, f"{where}: not readable as Parquet ({' '.join(str(e).split())})"]  # one line
    if rows != shard[out.S_ROWS]:
        problems.append(f"{where}: {rows} rows, the manifest lists {shard[out.S_ROWS]}")
    return problems


def _unlisted(fs: fsspec.AbstractFileSystem, root: str, listed: set[str]) -> list[str]:
    problems = []
    for kind in (out.SEQUENCES_DIR, out.REJECTS_DIR):
        top = posixpath.join(root, kind)
        if not fs.isdir(top):
            continue
        for path in sorted(fs.find(top)):
            relative = posixpath.relpath(path, root)
            if relative.endswith(".parquet") and relative not in listed:
                problems.append(f"{relative}: on disk but not listed in the manifest (another run's shard?)")
    return problems


def _card_problems(fs: fsspec.AbstractFileSystem, root: str, card: Mapping[str, Any]) -> list[str]:
    path = posixpath.join(root, str(card[out.S_PATH]))
    if not fs.isfile(path):
        return [f"dataset card {card[out.S_PATH]}: listed in the manifest but missing"]
    sha, size = sha256_and_size(fs, path)
    if sha != card.get(out.S_SHA256) or size != card.get(out.S_BYTES):
        return [f"dataset card {card[out.S_PATH]}: sha256 {sha} and {size} bytes, the manifest lists "
                f"{card.get(out.S_SHA256)} and {card.get(out.S_BYTES)}"]
    return []


def manifest_problems(output_dir: str, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every way the files of `output_dir` differ from its manifest and its stats records."""
    try:
        manifest = read_manifest(output_dir)
    except ValueError as e:
        return [f"manifest: {e}"]
    fs, root, _ = manifest_location(output_dir)
    problems: list[str] = []
    listed: set[str] = set()
    rows: dict[tuple[str, str], int] = {}
    for key in (out.M_SHARDS, out.M_REJECTS):
        for shard in manifest.get(key) or []:
            relative = posixpath.normpath(str(shard[out.S_PATH]))
            if relative in listed:
                problems.append(f"{key} shard {relative}: listed twice in the manifest")
                continue
            listed.add(relative)
            problems.extend(_shard_problems(fs, root, key, shard))
            if key == out.M_SHARDS:
                task = (str(shard[out.S_DATASET]), str(shard[out.S_TASK]))
                rows[task] = rows.get(task, 0) + int(shard[out.S_ROWS])
    problems.extend(_unlisted(fs, root, listed))
    for name, relative in sorted((manifest.get(out.M_STATS) or {}).items()):
        if not fs.isfile(posixpath.join(root, str(relative))):
            problems.append(f"stats file {relative} ({name}): listed in the manifest but missing")
    card = manifest.get(out.M_CARD)
    if card:
        problems.extend(_card_problems(fs, root, card))
    in_stats = {(str(r[out.DATASET]), str(r[out.TASK])): r.get(out.ST_SEQUENCES, 0) for r in records}
    for task in sorted(set(rows) | set(in_stats)):
        if rows.get(task, 0) != in_stats.get(task, 0):
            problems.append(
                f"{task[0]} / {task[1]}: the stats count {in_stats.get(task, 0)} sequences, the manifest lists "
                f"{rows.get(task, 0)} rows"
            )
    return problems


def verify_output(output_dir: str, records: Sequence[Mapping[str, Any]], *, finished: bool = True) -> list[str]:
    """Every problem of `output_dir` (`finished` False: no manifest, so only the books)."""
    return [*(manifest_problems(output_dir, records) if finished else []), *book_problems(records)]
