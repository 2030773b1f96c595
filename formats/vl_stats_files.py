"""The statistics files of a vision-language or text output (spec section 8): the same
stats/stats.parquet (`VL_STATS_SCHEMA`) and stats/stats.json (`{format_version, tasks}`,
read back by `formats.stats_files.read_stats_records`) as the agent data, one record per
task sorted by (dataset, task); there is no per-episode table.

`sample_rows` reads the few rows of each task that the HTML report decodes
(`audit/vl_report.py`, which also writes everything at once: `write_vl_stats`). All
through fsspec, so an output on gs:// works like a local one.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from formats.files import write_bytes
from formats.stats_files import stats_json
from schemas import output as out

TaskKey = tuple[str, str]
_MAP_COLUMNS = (out.VST_REJECTED_BY_REASON, out.VST_UNITS_REJECTED_BY_REASON)


def ordered_summaries(summaries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The task records sorted by (dataset, task); a task given twice, or a record without
    every `VL_STATS_SCHEMA` column, is a ValueError naming it."""
    seen: set[TaskKey] = set()
    for record in summaries:
        key = (record.get(out.DATASET), record.get(out.TASK))
        missing = [name for name in out.VL_STATS_SCHEMA.names if name not in record]
        if missing:
            raise ValueError(f"stats record of {key}: no {missing}")
        if key in seen:
            raise ValueError(f"stats record of {key} given twice")
        seen.add(key)
    return sorted(summaries, key=lambda record: (record[out.DATASET], record[out.TASK]))


def vl_stats_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The records as one table with the explicit `VL_STATS_SCHEMA` (maps as key/value lists)."""
    rows = [{**record, **{name: list(record[name].items()) for name in _MAP_COLUMNS}} for record in records]
    return pa.Table.from_pylist(rows, schema=out.VL_STATS_SCHEMA)


def write_vl_stats_files(output_dir: str, summaries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Writes stats.parquet and stats.json, sorted by (dataset, task); returns their paths
    relative to `output_dir` (keys `M_STATS_PARQUET`, `M_STATS_JSON`)."""
    records = ordered_summaries(summaries)
    sink = io.BytesIO()
    pq.write_table(vl_stats_table(records), sink)
    write_bytes(output_dir, out.STATS_PARQUET_FILE, sink.getvalue())
    write_bytes(output_dir, out.STATS_JSON_FILE, stats_json(records).encode("utf-8"))
    return {out.M_STATS_PARQUET: out.STATS_PARQUET_FILE, out.M_STATS_JSON: out.STATS_JSON_FILE}


def _first_rows(path: str, count: int) -> list[dict[str, Any]]:
    with fsspec.open(path, "rb") as handle:
        batches = pq.ParquetFile(handle).iter_batches(batch_size=count)
        batch = next(batches, None)
    return [] if batch is None else pa.Table.from_batches([batch]).to_pylist()


def sample_rows(shard_paths: Sequence[str], *, per_task: int = 3) -> dict[TaskKey, list[dict[str, Any]]]:
    """The first `per_task` rows (dicts as `to_pylist` gives them) of the first shard, by
    sorted path, of each task, keyed by (dataset, task) in sorted order. A task's shards
    share a directory (`sequences/<dataset>/<task>/`), so only one shard of each is opened."""
    if per_task < 0:
        raise ValueError(f"per_task must be >= 0, got {per_task}")
    first: dict[str, str] = {}
    for path in sorted(shard_paths):
        first.setdefault(posixpath.dirname(path), path)
    rows: dict[TaskKey, list[dict[str, Any]]] = {}
    for path in first.values():
        for row in _first_rows(path, per_task) if per_task else []:
            task = rows.setdefault((row[out.DATASET], row[out.TASK]), [])
            if len(task) < per_task:
                task.append(row)
    return dict(sorted(rows.items()))
