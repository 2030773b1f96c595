"""The statistics files of vision-language outputs: stats.parquet with its schema, a
stats.json in the agent layout (golden file; read back by `read_stats_records`), and the
sample rows the report decodes."""

from __future__ import annotations

import json
import os
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from formats.stats_files import read_stats_records
from formats.vl_stats_files import ordered_summaries, sample_rows, write_vl_stats_files
from schemas import output as out
from tests.transforms.test_vl_stats import A0, A1, B0, EXPECTED, L, _book
from tests.vl_row_fixtures import make_rows, row_dict
from transforms.vl_stats import VLTaskBook

GOLDEN = pathlib.Path(__file__).parent / "golden" / "vl_stats.json"


def _summaries() -> list[dict]:
    # Given out of order: the files sort by (dataset, task).
    return [_book().summary("vqav2", "vqav2"), VLTaskBook(sequence_length=L).summary("coco_captions", "coco_captions")]


def test_stats_json_matches_the_golden_file_and_reads_back(tmp_path: pathlib.Path) -> None:
    """Regenerate with `UPDATE_GOLDEN=1 python -m pytest tests/formats/test_vl_stats_files.py`."""
    paths = write_vl_stats_files(str(tmp_path), _summaries())
    assert paths == {out.M_STATS_PARQUET: "stats/stats.parquet", out.M_STATS_JSON: "stats/stats.json"}
    written = (tmp_path / out.STATS_JSON_FILE).read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(written)
    assert written == GOLDEN.read_text()
    records = read_stats_records(str(tmp_path))
    assert [r[out.TASK] for r in records] == ["coco_captions", "vqav2"]
    assert records[1] == {**EXPECTED, out.DATASET: "vqav2", out.TASK: "vqav2"}
    assert not (tmp_path / out.STATS_EPISODES_FILE).exists()


def test_stats_parquet_has_the_schema_and_the_same_numbers(tmp_path: pathlib.Path) -> None:
    write_vl_stats_files(str(tmp_path), _summaries())
    table = pq.read_table(tmp_path / out.STATS_PARQUET_FILE)
    assert table.schema.equals(out.VL_STATS_SCHEMA)
    rows = table.to_pylist()
    assert rows[0][out.VST_PADDING_FRACTION] is None and rows[0][out.VST_RECORDS_READ] == 0
    assert rows[1][out.VST_REJECTED_BY_REASON] == [("corrupt_image", 1), ("empty_text", 1)]
    assert rows[1][out.VST_UNIT_TEXT_TOKENS_MEDIAN] == 5.5


def test_a_task_twice_or_a_record_missing_a_column_is_refused() -> None:
    record = _summaries()[0]
    with pytest.raises(ValueError, match=r"stats record of \('vqav2', 'vqav2'\) given twice"):
        ordered_summaries([record, dict(record)])
    partial = {k: v for k, v in record.items() if k != out.VST_ROWS}
    with pytest.raises(ValueError, match=r"stats record of \('vqav2', 'vqav2'\): no \['rows'\]"):
        ordered_summaries([partial])


def _write_shard(path: pathlib.Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=out.VL_SEQUENCE_SCHEMA), path)
    return str(path)


def test_sample_rows_reads_the_first_rows_of_each_tasks_first_shard(tmp_path: pathlib.Path) -> None:
    batch = make_rows([[A0], [A1], [B0], [A0, B0]], length=L)
    coco = [row_dict(batch, r, dataset="coco", task="coco") for r in range(4)]
    vqa = [row_dict(batch, r, dataset="vqa", task="vqa") for r in range(2)]
    paths = [
        _write_shard(tmp_path / "sequences/vqa/vqa/part-00000-000.parquet", vqa),
        _write_shard(tmp_path / "sequences/coco/coco/part-00001-000.parquet", coco[2:]),
        _write_shard(tmp_path / "sequences/coco/coco/part-00000-000.parquet", coco),
    ]
    samples = sample_rows(paths, per_task=3)
    assert list(samples) == [("coco", "coco"), ("vqa", "vqa")]
    assert samples[("coco", "coco")] == coco[:3]  # the first shard by path, its first rows
    assert samples[("vqa", "vqa")] == vqa
    assert sample_rows(paths, per_task=0) == {}
