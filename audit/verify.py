"""`gato-audit`'s verification: does a finished output hold what its manifest and stats say?

`verify_output` returns one line per problem (empty: the output is whole):
- the manifest: readable (`formats.manifest.read_manifest`), no shard listed twice;
- every listed shard (sequences and rejects): exists, has the listed bytes and sha256,
  and its Parquet footer holds the listed rows;
- no `.parquet` file under `sequences/` or `rejects/` that the manifest does not list
  (another job's shards mixed in);
- the statistics files the manifest lists exist, and the dataset card has its listed bytes and sha256;
- per task (`stats/stats.json`): episodes read = kept + dropped + rejected, and the
  sequences the stats count are the rows the manifest lists for the task;
- per vision-language task (a record with `VST_RECORDS_READ`, spec section 8): records
  read = kept + rejected = kept + the sum of `rejected_by_reason`, the stats' rows are the
  manifest's rows, and the rejects shards' rows agree with the stats as far as they tell:
  a kept record writes one reject per lost pair (`units_rejected_by_reason` counts each),
  a rejected record writes at least one and is counted once, under its first reason. So
  per reason, rejects rows >= rejected records + lost pairs, with equality when no record
  was rejected.
Each shard is read once, streamed (a VL task's rejects shards once more, their reason
column only); nothing is written.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import pyarrow.parquet as pq

from formats.files import sha256_and_size
from formats.manifest import manifest_location, read_manifest
from schemas import output as out


def is_vl_record(record: Mapping[str, Any]) -> bool:
    """A vision-language task's stats record (`transforms/vl_stats.py`), not an agent task's."""
    return out.VST_RECORDS_READ in record


def _is_count(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool)


def _vl_book_problems(r: Mapping[str, Any]) -> list[str]:
    name = f"{r.get(out.DATASET)} / {r.get(out.TASK)}"
    keys = (out.VST_RECORDS_READ, out.VST_RECORDS_KEPT, out.VST_RECORDS_REJECTED, out.VST_UNITS, out.VST_ROWS)
    numbers = tuple(r.get(k) for k in keys)
    maps = [r.get(k) for k in (out.VST_REJECTED_BY_REASON, out.VST_UNITS_REJECTED_BY_REASON)]
    if not all(_is_count(n) for n in numbers) or not all(
        isinstance(m, Mapping) and all(_is_count(n) for n in m.values()) for m in maps
    ):
        return [f"{name}: stats counts {numbers} and by reason {tuple(maps)} are not all integers"]
    read, kept, rejected, _, _ = numbers
    problems = []
    if read != kept + rejected:
        problems.append(f"{name}: {read} records read but kept {kept} + rejected {rejected} = {kept + rejected}: "
                        "records lost or counted twice")
    by_reason = sum(maps[0].values())
    if rejected != by_reason:
        problems.append(f"{name}: {rejected} records rejected but {by_reason} by reason {dict(maps[0])}")
    return problems


def book_problems(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per task: read = kept + dropped + rejected (agent), read = kept + rejected = kept +
    rejected by reason (vision-language), else a line with the numbers."""
    problems = []
    for r in records:
        if is_vl_record(r):
            problems.extend(_vl_book_problems(r))
            continue
        read, kept, dropped, rejected = (r.get(k) for k in (out.ST_EPISODES_READ, out.ST_KEPT, out.ST_DROPPED, out.ST_REJECTED))
        numbers = (read, kept, dropped, rejected)
        if not all(_is_count(n) for n in numbers):
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
    in_stats = {
        (str(r[out.DATASET]), str(r[out.TASK])): r.get(out.VST_ROWS if is_vl_record(r) else out.ST_SEQUENCES, 0)
        for r in records
    }
    for task in sorted(set(rows) | set(in_stats)):
        if rows.get(task, 0) != in_stats.get(task, 0):
            problems.append(
                f"{task[0]} / {task[1]}: the stats count {in_stats.get(task, 0)} sequences, the manifest lists "
                f"{rows.get(task, 0)} rows"
            )
    vl = [r for r in records if is_vl_record(r)]
    if vl:
        problems.extend(vl_reject_problems(vl, _reject_reasons(fs, root, manifest.get(out.M_REJECTS) or [])))
    return problems


def _reject_reasons(
    fs: fsspec.AbstractFileSystem, root: str, shards: Sequence[Mapping[str, Any]]
) -> dict[tuple[str, str], Counter[str]]:
    """Rejects rows per (dataset, task) and reason; a shard that does not open is left out
    (its problem is already reported by the shard checks)."""
    reasons: dict[tuple[str, str], Counter[str]] = {}
    for shard in shards:
        path = posixpath.join(root, str(shard[out.S_PATH]))
        try:
            with fs.open(path, "rb") as f:
                column = pq.read_table(f, columns=[out.REASON]).column(out.REASON).to_pylist()
        except Exception:  # noqa: BLE001 - missing or unreadable: reported by _shard_problems
            continue
        task = (str(shard[out.S_DATASET]), str(shard[out.S_TASK]))
        reasons.setdefault(task, Counter()).update(str(reason) for reason in column)
    return reasons


def vl_reject_problems(
    records: Sequence[Mapping[str, Any]], reasons: Mapping[tuple[str, str], Mapping[str, int]]
) -> list[str]:
    """Per vision-language task and reason: rejects rows >= rejected records + lost pairs,
    equal when no record was rejected (module doc); records whose counts are not integers
    are left to `book_problems`."""
    problems = []
    for r in records:
        task = (str(r[out.DATASET]), str(r[out.TASK]))
        records_by, units_by = r.get(out.VST_REJECTED_BY_REASON), r.get(out.VST_UNITS_REJECTED_BY_REASON)
        if not isinstance(records_by, Mapping) or not isinstance(units_by, Mapping):
            continue
        found = reasons.get(task, {})
        exact = not r.get(out.VST_RECORDS_REJECTED)
        for reason in sorted(set(records_by) | set(units_by) | (set(found) if exact else set())):
            expected = records_by.get(reason, 0) + units_by.get(reason, 0)
            rows = found.get(reason, 0)
            if rows < expected or (exact and rows != expected):
                problems.append(
                    f"{task[0]} / {task[1]}: {rows} rejects rows of reason {reason}, the stats count "
                    f"{records_by.get(reason, 0)} rejected records + {units_by.get(reason, 0)} lost pairs"
                    + ("" if exact else " (at least that many rows)")
                )
    return problems


def verify_output(output_dir: str, records: Sequence[Mapping[str, Any]], *, finished: bool = True) -> list[str]:
    """Every problem of `output_dir` (`finished` False: no manifest, so only the books)."""
    return [*(manifest_problems(output_dir, records) if finished else []), *book_problems(records)]
