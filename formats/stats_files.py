"""The statistics files for auditors (spec section 4): stats/stats.{parquet,json}, stats/episodes.parquet.

`episodes_batches` turns one task's checked books (`transforms.books.TaskBooks`) into its
per-episode audit table: one row per episode read, the valid ones in collection order,
then the rejects without a return, built from the books' columns a batch at a time (no
Python object per episode; `episodes_table` is the whole table). `task_statistics` checks
and summarizes one task's books given as rows into (stats record, that table).

Writing, at any number of episodes: each task's table is written on its own
(`write_episodes_part`: a temporary part `_tmp/stats/<attempt>/<dataset>/<task>/episodes.parquet`),
and `write_statistics` takes every task's small record with its table or part, sorted by
(dataset, task): it writes stats.parquet and stats.json from the records, and copies the
tables one row group at a time into episodes.parquet. Row groups hold
`STATS_EPISODES_ROW_GROUP_ROWS` rows of one task (a task's last one fewer), so the file's
bytes depend only on the rows, and no step holds more than one row group of them.
`remove_episodes_parts` deletes the parts afterwards (with those of failed attempts).
`read_stats_records` reads the records back. All through fsspec.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from formats.files import raise_if_no_space, write_bytes
from formats.paths import path_under, safe_component
from schemas import output as out
from transforms.book_summary import summarize_books
from transforms.books import (
    DROPPED,
    KEPT,
    REJECTED,
    DecisionRow,
    KeptRow,
    RejectRow,
    ReturnRow,
    SequenceCounts,
    StatsOptions,
    TaskBooks,
    check_books,
)
from transforms.episode import TaskKey
from transforms.expert_filter import TaskThreshold

# A task's per-episode table, or the path of the part it was written to.
Episodes = pa.Table | str
_DECISIONS = {KEPT: out.DECISION_KEPT, DROPPED: out.DECISION_DROPPED, REJECTED: out.DECISION_REJECTED}


def _strings(values: Sequence[str | None]) -> pa.Array:
    return pa.array(values, pa.string())


def _episode_ids(books: TaskBooks, order: np.ndarray) -> pa.Array:
    """The ids of the returns at `order` (indices into the books' columns), from their UTF-8 buffer."""
    ids = books.episode_ids
    offsets = ids.offsets()
    if offsets[-1] >= 2**31:
        raise ValueError(f"task {books.task}: episode ids take {offsets[-1]} bytes, more than one string column holds")
    column = pa.Array.from_buffers(
        pa.string(), len(ids), [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(ids.data)]
    )
    return column.take(pa.array(order))


def _repeated(value: str, rows: int) -> pa.Array:
    return pc.take(_strings([value]), pa.array(np.zeros(rows, np.int64)))


def _returns_batch(books: TaskBooks, start: int, stop: int) -> pa.RecordBatch:
    """Rows `start:stop` of the episodes with a return (collection indices)."""
    rows = slice(start, stop)
    decisions = _strings([_DECISIONS[code] for code in sorted(_DECISIONS)])
    columns = {
        out.DATASET: _repeated(books.task[0], stop - start),
        out.TASK: _repeated(books.task[1], stop - start),
        out.EPISODE_ID: _episode_ids(books, books.order[rows]),
        out.EP_COLLECTION_INDEX: pa.array(np.arange(start, stop, dtype=np.int64)),
        out.EP_RETURN: pa.array(books.values[rows], pa.float64()),
        out.EP_DECISION: pc.take(decisions, pa.array(books.outcome[rows])),
        out.REASON: pc.take(_strings(list(books.reasons)), pa.array(books.reason[rows])),
        out.SOURCE_FILE: pc.take(_strings(list(books.files)), pa.array(books.file_index[rows])),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in out.STATS_EPISODES_SCHEMA], schema=out.STATS_EPISODES_SCHEMA)


def _orphans_batch(books: TaskBooks, orphans: Sequence[RejectRow]) -> pa.RecordBatch:
    """Rejects without a return: no collection index, no return."""
    columns = {
        out.DATASET: _repeated(books.task[0], len(orphans)),
        out.TASK: _repeated(books.task[1], len(orphans)),
        out.EPISODE_ID: _strings([r.episode_id for r in orphans]),
        out.EP_COLLECTION_INDEX: pa.nulls(len(orphans), pa.int64()),
        out.EP_RETURN: pa.nulls(len(orphans), pa.float64()),
        out.EP_DECISION: _strings([out.DECISION_REJECTED] * len(orphans)),
        out.REASON: _strings([r.reason for r in orphans]),
        out.SOURCE_FILE: _strings([r.source_file for r in orphans]),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in out.STATS_EPISODES_SCHEMA], schema=out.STATS_EPISODES_SCHEMA)


def episodes_batches(books: TaskBooks, *, rows: int = out.STATS_EPISODES_ROW_GROUP_ROWS) -> Iterator[pa.RecordBatch]:
    """The per-episode audit table of one task (`STATS_EPISODES_SCHEMA`) in batches of
    `rows` rows: the episodes with a return in collection order, then the rejects without
    one, by (source file, episode id, reason, detail: the copies of a duplicate id differ
    only there). Built from the books' columns one batch at a time."""
    n = int(books.order.size)
    total = n + len(books.orphans)
    for start in range(0, total, rows):
        stop = min(start + rows, total)
        parts = []
        if start < n:
            parts.append(_returns_batch(books, start, min(stop, n)))
        if stop > n:
            parts.append(_orphans_batch(books, books.orphans[max(start - n, 0) : stop - n]))
        yield parts[0] if len(parts) == 1 else pa.concat_batches(parts)


def episodes_table(books: TaskBooks) -> pa.Table:
    """The whole per-episode audit table of one task (`episodes_batches`)."""
    return pa.Table.from_batches(list(episodes_batches(books)), schema=out.STATS_EPISODES_SCHEMA)


def task_statistics(
    task: TaskKey,
    *,
    threshold: TaskThreshold | None,
    returns: Iterable[ReturnRow],
    decisions: Iterable[DecisionRow],
    kept: Iterable[KeptRow],
    rejects: Iterable[RejectRow],
    options: StatsOptions = StatsOptions(),
    sequences: SequenceCounts | None = None,
) -> tuple[dict[str, Any], pa.Table]:
    """The stats record and the per-episode table of one task: `check_books` (and its
    ValueErrors when the books do not balance), then `summarize_books` and `episodes_table`."""
    books = check_books(
        task, threshold=threshold, returns=returns, decisions=decisions, kept=kept, rejects=rejects,
        sequences=sequences,
    )
    return summarize_books(books, options=options), episodes_table(books)


def stats_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The stats records as one table with the explicit `STATS_SCHEMA`."""
    rows = [
        {**record, out.ST_REJECTED_BY_REASON: list(record[out.ST_REJECTED_BY_REASON].items())}
        for record in records
    ]
    return pa.Table.from_pylist(rows, schema=out.STATS_SCHEMA)


def stats_json(records: Sequence[Mapping[str, Any]]) -> str:
    """stats.json: the same records (NaN never appears: empty statistics are null)."""
    document = {out.SJ_FORMAT_VERSION: out.STATS_FORMAT_VERSION, out.SJ_TASKS: list(records)}
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _ordered(results: Iterable[tuple[Mapping[str, Any], Episodes]]) -> list[tuple[Mapping[str, Any], Episodes]]:
    return sorted(results, key=lambda item: (item[0][out.DATASET], item[0][out.TASK]))


def stats_records(results: Iterable[tuple[Mapping[str, Any], Episodes]]) -> list[Mapping[str, Any]]:
    """The stats records of `results` in the files' order, (dataset, task)."""
    return [record for record, _ in _ordered(results)]


def write_episodes_part(output_dir: str, batches: Iterable[pa.RecordBatch], *, task: TaskKey, attempt: str) -> str:
    """Writes one task's per-episode table, one row group a batch, as a temporary part;
    returns its path (or URL)."""
    name = out.STATS_EPISODES_FILE.rsplit("/", 1)[1]
    path = path_under(output_dir, out.TMP_DIR, out.STATS_DIR, attempt, *map(safe_component, task), name)
    fs, local = fsspec.core.url_to_fs(path)
    with raise_if_no_space(path):
        fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(local, "wb") as handle, pq.ParquetWriter(handle, out.STATS_EPISODES_SCHEMA) as writer:
            for batch in batches:
                writer.write_batch(batch, row_group_size=out.STATS_EPISODES_ROW_GROUP_ROWS)
    return path


def _copy_episodes(episodes: Episodes, writer: pq.ParquetWriter) -> None:
    """A task's table into `writer`, in row groups of `STATS_EPISODES_ROW_GROUP_ROWS` rows;
    a part is read one row group at a time."""
    if isinstance(episodes, pa.Table):
        writer.write_table(episodes, row_group_size=out.STATS_EPISODES_ROW_GROUP_ROWS)
        return
    with fsspec.open(episodes, "rb") as handle:
        part = pq.ParquetFile(handle)
        for group in range(part.num_row_groups):
            writer.write_table(part.read_row_group(group), row_group_size=out.STATS_EPISODES_ROW_GROUP_ROWS)


def _write_episodes(output_dir: str, ordered: Iterable[Episodes]) -> None:
    """episodes.parquet from the tasks' tables, one at a time, each its own row groups."""
    path = path_under(output_dir, *out.STATS_EPISODES_FILE.split("/"))
    fs, local = fsspec.core.url_to_fs(path)
    with raise_if_no_space(path):
        fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(local, "wb") as handle, pq.ParquetWriter(handle, out.STATS_EPISODES_SCHEMA) as writer:
            for episodes in ordered:
                _copy_episodes(episodes, writer)


def write_statistics(output_dir: str, results: Iterable[tuple[Mapping[str, Any], Episodes]]) -> dict[str, str]:
    """Writes stats.parquet, stats.json and episodes.parquet, sorted by (dataset, task);
    returns their paths relative to `output_dir` (keys `M_STATS_*`). Each result is a
    task's stats record and its per-episode table or part (`write_episodes_part`)."""
    ordered = _ordered(results)
    records = [record for record, _ in ordered]
    write_bytes(output_dir, out.STATS_PARQUET_FILE, _parquet_bytes(stats_table(records)))
    write_bytes(output_dir, out.STATS_JSON_FILE, stats_json(records).encode("utf-8"))
    _write_episodes(output_dir, (episodes for _, episodes in ordered))
    return {
        out.M_STATS_PARQUET: out.STATS_PARQUET_FILE,
        out.M_STATS_JSON: out.STATS_JSON_FILE,
        out.M_STATS_EPISODES: out.STATS_EPISODES_FILE,
    }


def remove_episodes_parts(output_dir: str) -> None:
    """Deletes `_tmp/stats` (every part, those of failed attempts too)."""
    path = path_under(output_dir, out.TMP_DIR, out.STATS_DIR)
    fs, local = fsspec.core.url_to_fs(path)
    if fs.exists(local):
        fs.rm(local, recursive=True)


def read_stats_records(output_dir: str) -> list[dict[str, Any]]:
    """The per-task records of a written output, from stats/stats.json."""
    path = path_under(output_dir, *out.STATS_JSON_FILE.split("/"))
    with fsspec.open(path, "rt", encoding="utf-8") as handle:
        document = json.load(handle)
    version = document.get(out.SJ_FORMAT_VERSION)
    if version != out.STATS_FORMAT_VERSION:
        raise ValueError(f"{path}: stats format version {version!r}, expected {out.STATS_FORMAT_VERSION}")
    return list(document[out.SJ_TASKS])
