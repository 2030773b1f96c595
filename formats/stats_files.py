"""Per-task statistics for auditors (spec section 4): stats/stats.{parquet,json}, stats/episodes.parquet.

`task_statistics` (pure) turns everything the job knows about one task (its threshold,
the return of every valid episode, the filter's decisions, the episodes kept and
tokenized, the rejects) into one stats record and the task's per-episode audit table.
It checks the books: per task, read = kept + dropped + rejected, and an episode the
filter kept is either tokenized (a `KeptEpisode`) or rejected, never lost; a tokenized
episode that a later stage (sequencing) rejects counts as rejected. When the job's
sequencing counts are given, every kept episode was sequenced exactly once: the summed
`SequenceCounts.episodes` equals the kept count, and its rows and tokens become the
sequencing columns (a one-episode task shows prompted 0, prompts_unavailable > 0).
`TaskStatistics` is the Beam stage: it groups compact per-episode tuples (never
episodes) per task, computes the records and writes the files with fsspec.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from formats.files import write_bytes
from formats.paths import path_under
from schemas import output as out


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
