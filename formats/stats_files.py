"""The statistics files for auditors (spec section 4): stats/stats.{parquet,json}, stats/episodes.parquet.

`episodes_table` turns one task's checked books (`transforms.books.TaskBooks`) into its
per-episode audit table: one row per episode read, the valid ones in collection order,
then the rejects without a return. `task_statistics` checks and summarizes one task's
books into (stats record, that table). `write_statistics` writes every task's record and
table, sorted by (dataset, task), with fsspec; `read_stats_records` reads the records back.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from formats.files import write_bytes
from formats.paths import path_under
from schemas import output as out
from transforms.books import (
    DecisionRow,
    KeptRow,
    RejectRow,
    ReturnRow,
    SequenceCounts,
    StatsOptions,
    TaskBooks,
    check_books,
    summarize_books,
)
from transforms.episode import TaskKey
from transforms.expert_filter import TaskThreshold


def episodes_table(books: TaskBooks) -> pa.Table:
    """One row per episode read (`STATS_EPISODES_SCHEMA`): the episodes with a return in
    collection order, then the rejects without one, by (source file, episode id, reason,
    detail: the copies of a duplicate id differ only there)."""
    dataset, task = books.task
    episode_ids: list[str | None] = []
    decision: list[str] = []
    reason: list[str] = []
    source: list[str | None] = []
    for row in books.returns:
        episode_ids.append(row.episode_id)
        source.append(row.source_file)
        if row.episode_id in books.tokenized:
            decision.append(out.DECISION_KEPT)
            reason.append(books.decided[row.episode_id].reason)
        elif row.episode_id in books.rejected_ids:
            decision.append(out.DECISION_REJECTED)
            reason.append(books.rejected_ids[row.episode_id].reason)
        else:
            decision.append(out.DECISION_DROPPED)
            reason.append(books.decided[row.episode_id].reason)
    with_return = set(episode_ids)
    orphans = sorted(
        (row for row in books.reject_rows if row.episode_id is None or row.episode_id not in with_return),
        key=lambda r: (r.source_file, "" if r.episode_id is None else r.episode_id, r.reason, r.detail),
    )
    n, m = len(books.returns), len(orphans)
    columns = {
        out.DATASET: [dataset] * (n + m),
        out.TASK: [task] * (n + m),
        out.EPISODE_ID: episode_ids + [row.episode_id for row in orphans],
        out.EP_COLLECTION_INDEX: pa.array(
            np.arange(n, dtype=np.int64).tolist() + [None] * m, type=pa.int64()
        ),
        out.EP_RETURN: pa.array(books.values.tolist() + [None] * m, type=pa.float64()),
        out.EP_DECISION: decision + [out.DECISION_REJECTED] * m,
        out.REASON: reason + [row.reason for row in orphans],
        out.SOURCE_FILE: source + [row.source_file for row in orphans],
    }
    return pa.table(columns, schema=out.STATS_EPISODES_SCHEMA)


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


def _ordered(
    results: Iterable[tuple[Mapping[str, Any], pa.Table]],
) -> list[tuple[Mapping[str, Any], pa.Table]]:
    return sorted(results, key=lambda item: (item[0][out.DATASET], item[0][out.TASK]))


def stats_records(results: Iterable[tuple[Mapping[str, Any], pa.Table]]) -> list[Mapping[str, Any]]:
    """The stats records of `results` in the files' order, (dataset, task)."""
    return [record for record, _ in _ordered(results)]


def write_statistics(output_dir: str, results: Iterable[tuple[Mapping[str, Any], pa.Table]]) -> dict[str, str]:
    """Writes stats.parquet, stats.json and episodes.parquet, sorted by (dataset, task);
    returns their paths relative to `output_dir` (keys `M_STATS_*`)."""
    ordered = _ordered(results)
    records = [record for record, _ in ordered]
    episodes = (
        pa.concat_tables([table for _, table in ordered])
        if ordered
        else out.STATS_EPISODES_SCHEMA.empty_table()
    )
    write_bytes(output_dir, out.STATS_PARQUET_FILE, _parquet_bytes(stats_table(records)))
    write_bytes(output_dir, out.STATS_JSON_FILE, stats_json(records).encode("utf-8"))
    write_bytes(output_dir, out.STATS_EPISODES_FILE, _parquet_bytes(episodes))
    paths = {
        out.M_STATS_PARQUET: out.STATS_PARQUET_FILE,
        out.M_STATS_JSON: out.STATS_JSON_FILE,
        out.M_STATS_EPISODES: out.STATS_EPISODES_FILE,
    }
    return paths


def read_stats_records(output_dir: str) -> list[dict[str, Any]]:
    """The per-task records of a written output, from stats/stats.json."""
    path = path_under(output_dir, *out.STATS_JSON_FILE.split("/"))
    with fsspec.open(path, "rt", encoding="utf-8") as handle:
        document = json.load(handle)
    version = document.get(out.SJ_FORMAT_VERSION)
    if version != out.STATS_FORMAT_VERSION:
        raise ValueError(f"{path}: stats format version {version!r}, expected {out.STATS_FORMAT_VERSION}")
    return list(document[out.SJ_TASKS])
