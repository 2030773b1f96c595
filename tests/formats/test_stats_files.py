"""The statistics files (formats/stats_files.py): the per-episode table, stats.{json,parquet},
episodes.parquet (streamed from per-task parts), and reading them back."""

from __future__ import annotations

import json
import math
import os
import pathlib
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.report import write_report
from formats.stats_files import (
    episodes_batches,
    episodes_table,
    read_stats_records,
    remove_episodes_parts,
    stats_json,
    stats_table,
    task_statistics,
    write_episodes_part,
    write_statistics,
)
from schemas import output as out
from tests.transforms.test_books import TASK, book_rows, return_rows
from transforms.book_summary import summarize_books
from transforms.books import SequenceCounts, check_books

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "stats"


def test_episodes_table_follows_collection_order_not_arrival() -> None:
    values = [float(v) for v in range(20)]
    threshold, decisions, kept, rejects = book_rows(values)
    rows = return_rows(values)
    random.Random(0).shuffle(rows)
    _, episodes = task_statistics(TASK, threshold=threshold, returns=rows, decisions=decisions, kept=kept, rejects=rejects)
    assert episodes.column(out.EPISODE_ID).to_pylist() == [f"e{i}" for i in range(20)]
    assert episodes.column(out.EP_COLLECTION_INDEX).to_pylist() == list(range(20))


def test_episodes_table_of_checked_books() -> None:
    values = [1.0, 4.0, 2.0, 3.5]  # threshold 3.2: e1, e3 kept; e3 rejected after tokenizing
    threshold, decisions, kept, rejects = book_rows(values)
    rejects += [
        ("e3", "shard-0", "timestep_too_long", None, "1100 > 1024 tokens"),
        (None, "shard-9", "corrupt_record", None, "bad CRC"),
        ("b0", "shard-1", "rlds_is_last", None, "no is_last"),  # rejected before pass 1: no return
    ]
    books = check_books(TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept,
                        rejects=rejects)
    table = episodes_table(books)
    assert table.schema.equals(out.STATS_EPISODES_SCHEMA)
    columns = (out.EPISODE_ID, out.EP_COLLECTION_INDEX, out.EP_RETURN, out.EP_DECISION, out.REASON, out.SOURCE_FILE)
    assert [tuple(row[c] for c in columns) for row in table.to_pylist()] == [
        ("e0", 0, 1.0, out.DECISION_DROPPED, "r", "shard-0"),
        ("e1", 1, 4.0, out.DECISION_KEPT, "r", "shard-0"),
        ("e2", 2, 2.0, out.DECISION_DROPPED, "r", "shard-0"),
        ("e3", 3, 3.5, out.DECISION_REJECTED, "timestep_too_long", "shard-0"),
        # Rejects without a return, by (source file, episode id, reason).
        ("b0", None, None, out.DECISION_REJECTED, "rlds_is_last", "shard-1"),
        (None, None, None, out.DECISION_REJECTED, "corrupt_record", "shard-9"),
    ]
    assert set(table.column(out.DATASET).to_pylist()) == {TASK[0]}
    assert set(table.column(out.TASK).to_pylist()) == {TASK[1]}


def _golden_results() -> list:
    values = [-21.0, -19.0, -20.0, -18.5, -15.0, -11.0, -12.0, -7.0, -9.5, -10.0, -6.0, -13.0, -8.0, -21.0, -4.0, -5.0, -9.0, -20.0, -6.5, -7.5, -8.0, -3.0]
    threshold, decisions, kept, rejects = book_rows(values, tokenize_reject={"e14"})
    rejects.append((None, "shard-7", "corrupt_record", None, "CRC mismatch"))
    # Pong keeps 2 episodes (30 tokens each); 3 of 6 rows carry an 8-token prompt.
    pong_counts = SequenceCounts(episodes=2, sequences=6, prompted=3, unprompted=3, prompts_unavailable=0, tokens=60 + 3 * 8)
    pong = task_statistics(TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept, rejects=rejects,
                           sequences=pong_counts)
    walker_values = [0.25 * i * i for i in range(30)]
    threshold, decisions, kept, rejects = book_rows(walker_values)
    walker_counts = SequenceCounts(episodes=4, sequences=8, prompted=4, unprompted=4, prompts_unavailable=1, tokens=120 + 4 * 6)
    walker = task_statistics(("dmc", "walker_walk"), threshold=threshold, returns=return_rows(walker_values), decisions=decisions, kept=kept, rejects=rejects,
                             sequences=walker_counts)
    return [walker, pong]


def test_stats_json_matches_golden_file(tmp_path: pathlib.Path) -> None:
    write_statistics(str(tmp_path), _golden_results())
    written = (tmp_path / out.STATS_JSON_FILE).read_text()
    golden = GOLDEN / "stats.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(written)
    assert written == golden.read_text()
    # Sorted by (dataset, task), whatever order the tasks arrived in.
    assert [t[out.TASK] for t in json.loads(written)[out.SJ_TASKS]] == [TASK[1], "walker_walk"]
    assert not (tmp_path / out.REPORT_FILE).exists()


def test_stats_json_and_table_carry_the_same_records() -> None:
    records = [record for record, _ in _golden_results()]
    document = json.loads(stats_json(records))
    assert document[out.SJ_FORMAT_VERSION] == out.STATS_FORMAT_VERSION and document[out.SJ_TASKS] == records
    table = stats_table(records)
    assert table.schema.equals(out.STATS_SCHEMA)
    rows = table.to_pylist()
    for row in rows:
        row[out.ST_REJECTED_BY_REASON] = dict(row[out.ST_REJECTED_BY_REASON])
    assert rows == records


def test_written_stats_are_readable_by_duckdb_and_polars(tmp_path: pathlib.Path) -> None:
    import duckdb
    import polars as pl

    write_statistics(str(tmp_path), _golden_results())
    path = str(tmp_path / out.STATS_PARQUET_FILE)
    kept = duckdb.sql(f"select task, kept from read_parquet('{path}') order by task").fetchall()
    # Pong: W = 2, E = mean(-4, -5) = -4.5, threshold -5.4: -4, -5, -3 pass, -4 rejected later.
    # Walker: W = 3, E = 0.25 * (27² + 28² + 29²) / 3 = 196.1667, threshold 156.93: i = 26..29.
    assert kept == [(TASK[1], 2), ("walker_walk", 4)]
    frame = pl.read_parquet(tmp_path / out.STATS_EPISODES_FILE)
    assert frame.height == 22 + 1 + 30
    assert math.isclose(frame.filter(pl.col(out.EPISODE_ID) == "e3")[out.EP_RETURN][0], -18.5)


def test_an_output_without_tasks_still_has_valid_files(tmp_path: pathlib.Path) -> None:
    paths = write_statistics(str(tmp_path), [])
    assert set(paths.values()) == {out.STATS_PARQUET_FILE, out.STATS_JSON_FILE, out.STATS_EPISODES_FILE}
    assert write_report(str(tmp_path)) == out.REPORT_FILE and (tmp_path / out.REPORT_FILE).exists()
    assert pq.read_table(tmp_path / out.STATS_PARQUET_FILE).schema.equals(out.STATS_SCHEMA)
    assert pq.read_table(tmp_path / out.STATS_EPISODES_FILE).num_rows == 0
    assert read_stats_records(str(tmp_path)) == []


def test_reading_stats_of_another_format_version_is_an_error(tmp_path: pathlib.Path) -> None:
    write_statistics(str(tmp_path), [])
    path = tmp_path / out.STATS_JSON_FILE
    path.write_text(json.dumps({out.SJ_FORMAT_VERSION: -1, out.SJ_TASKS: []}))
    with pytest.raises(ValueError, match="stats format version -1, expected"):
        read_stats_records(str(tmp_path))


def test_episodes_stream_from_per_task_parts_one_row_group_per_task(tmp_path: pathlib.Path) -> None:
    # Issue 14, item 4: each task's table is written on its own and streamed into
    # episodes.parquet, so no step holds every task's per-episode table at once.
    results = _golden_results()
    write_statistics(str(tmp_path / "tables"), results)
    parts = [(record, write_episodes_part(str(tmp_path / "parts"), table.to_batches(),
                                          task=(record[out.DATASET], record[out.TASK]), attempt="a" * 32))
             for record, table in results]
    assert all(isinstance(part, str) and "/_tmp/stats/" in part for _, part in parts)
    write_statistics(str(tmp_path / "parts"), parts)
    for name in (out.STATS_PARQUET_FILE, out.STATS_JSON_FILE, out.STATS_EPISODES_FILE):
        assert (tmp_path / "parts" / name).read_bytes() == (tmp_path / "tables" / name).read_bytes()
    metadata = pq.ParquetFile(tmp_path / "parts" / out.STATS_EPISODES_FILE).metadata
    # (dataset, task) order: atari/Pong (22 episodes + 1 unreadable record), then dmc/walker_walk (30).
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [23, 30]
    remove_episodes_parts(str(tmp_path / "parts"))
    assert not (tmp_path / "parts" / out.TMP_DIR / "stats").exists()
    remove_episodes_parts(str(tmp_path / "parts"))  # nothing left: no error


def test_large_tasks_are_cut_into_row_groups_of_one_size_whatever_the_path(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Row groups of 7 rows stand in for 65,536: a task's rows, then its rejects without a
    # return, cut at the same places whether the table is in memory or in a part.
    monkeypatch.setattr(out, "STATS_EPISODES_ROW_GROUP_ROWS", 7)
    values = [float(v % 5) for v in range(16)]
    threshold, decisions, kept, rejects = book_rows(values, tokenize_reject={"e4"})
    rejects += [(None, f"shard-{i}", "corrupt_record", None, "bad CRC") for i in range(4)]
    books = check_books(TASK, threshold=threshold, returns=return_rows(values), decisions=decisions, kept=kept,
                        rejects=rejects)
    batches = list(episodes_batches(books, rows=7))
    assert [b.num_rows for b in batches] == [7, 7, 6]  # 16 with a return, then 4 unreadable records
    table = episodes_table(books)
    assert pa.Table.from_batches(batches).equals(table)
    rows = table.to_pylist()
    assert [r[out.EP_COLLECTION_INDEX] for r in rows] == list(range(16)) + [None] * 4
    assert [r[out.SOURCE_FILE] for r in rows[16:]] == [f"shard-{i}" for i in range(4)]
    record = summarize_books(books)
    write_statistics(str(tmp_path / "tables"), [(record, table)])
    part = write_episodes_part(str(tmp_path / "parts"), batches, task=TASK, attempt="b" * 32)
    write_statistics(str(tmp_path / "parts"), [(record, part)])
    written = (tmp_path / "parts" / out.STATS_EPISODES_FILE).read_bytes()
    assert written == (tmp_path / "tables" / out.STATS_EPISODES_FILE).read_bytes()
    metadata = pq.ParquetFile(tmp_path / "parts" / out.STATS_EPISODES_FILE).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [7, 7, 6]
