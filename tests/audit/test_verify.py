"""audit/verify.py: the books per task, and a finished output's files against its manifest."""

from __future__ import annotations

import hashlib
import json
import pathlib

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import beam_runner
from audit.verify import book_problems, manifest_problems, verify_output, vl_reject_problems
from formats.stats_files import read_stats_records
from schemas import output as out
from schemas.vl import CORRUPT_IMAGE, EMPTY_TEXT, MISSING_FIELD
from schemas.vocab import GATO


def _record(read: int, kept: int, dropped: int, rejected: int, sequences: int = 0) -> dict:
    return {out.DATASET: "d", out.TASK: "t", out.ST_EPISODES_READ: read, out.ST_KEPT: kept,
            out.ST_DROPPED: dropped, out.ST_REJECTED: rejected, out.ST_SEQUENCES: sequences}


def test_books_balance_or_name_the_task_and_the_numbers() -> None:
    assert book_problems([_record(5, 2, 2, 1)]) == []
    assert book_problems([_record(5, 2, 2, 0)]) == [
        "d / t: 5 episodes read but kept 2 + dropped 2 + rejected 0 = 4: episodes lost or counted twice"
    ]
    assert book_problems([_record(5, 2, None, 0)]) == ["d / t: stats counts (5, 2, None, 0) are not all integers"]  # type: ignore[arg-type]


def _output(root: pathlib.Path, *, listed_twice: bool = False) -> str:
    relative = "sequences/d/t/part-00000-000.parquet"
    path = root.joinpath(*relative.split("/"))
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    data = path.read_bytes()
    entry = {out.S_PATH: relative, out.S_DATASET: "d", out.S_TASK: "t", out.S_ROWS: 3,
             out.S_BYTES: len(data), out.S_SHA256: hashlib.sha256(data).hexdigest()}
    manifest = {out.M_FORMAT_VERSION: out.MANIFEST_FORMAT_VERSION, out.M_VOCABULARY: GATO.to_metadata(),
                out.M_SEQUENCE_LENGTH: 8, out.M_SHARDS: [entry, entry] if listed_twice else [entry],
                out.M_STATS: {"json": out.STATS_JSON_FILE}}
    (root / out.MANIFEST_FILE).write_text(json.dumps(manifest))
    return str(root)


def test_a_whole_output_has_no_problems_but_its_missing_stats_file(tmp_path: pathlib.Path) -> None:
    output = _output(tmp_path)
    assert manifest_problems(output, [_record(3, 1, 2, 0, sequences=3)]) == [
        f"stats file {out.STATS_JSON_FILE} (json): listed in the manifest but missing"
    ]


def test_a_shard_listed_twice_and_an_unfinished_output(tmp_path: pathlib.Path) -> None:
    output = _output(tmp_path, listed_twice=True)
    problems = manifest_problems(output, [_record(3, 1, 2, 0, sequences=3)])
    assert "shards shard sequences/d/t/part-00000-000.parquet: listed twice in the manifest" in problems
    (tmp_path / out.MANIFEST_FILE).unlink()
    assert verify_output(output, [_record(3, 1, 2, 0)], finished=False) == []
    assert manifest_problems(output, [])[0].startswith("manifest: ")


@pytest.fixture(scope="module")
def vl_output(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A real vision-language output (vqav2: 12 records kept, 12 pairs, 3 rows, no rejects), made once."""
    out_dir = tmp_path_factory.mktemp("vl") / "out"
    assert beam_runner.main(["--dataset=vqav2", f"--output_dir={out_dir}", "--log_level=WARNING"]) == 0
    return out_dir


def _copy(vl_output: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    copy = tmp_path / "copy"
    shutil.copytree(vl_output, copy)
    return copy


def _vl(**changes: object) -> dict:
    record = {out.DATASET: "d", out.TASK: "t", out.VST_RECORDS_READ: 5, out.VST_RECORDS_KEPT: 3,
              out.VST_RECORDS_REJECTED: 2, out.VST_REJECTED_BY_REASON: {CORRUPT_IMAGE: 2},
              out.VST_UNITS_REJECTED_BY_REASON: {EMPTY_TEXT: 1}, out.VST_UNITS: 4, out.VST_ROWS: 1}
    return {**record, **changes}


def test_a_real_vision_language_output_verifies(vl_output: pathlib.Path) -> None:
    records = read_stats_records(str(vl_output))
    assert [(r[out.VST_RECORDS_READ], r[out.VST_ROWS]) for r in records] == [(12, 3)]
    assert verify_output(str(vl_output), records) == []


def test_vision_language_books_balance_by_records_and_by_reason() -> None:
    assert book_problems([_vl()]) == []
    assert book_problems([_vl(**{out.VST_RECORDS_KEPT: 2})]) == [
        "d / t: 5 records read but kept 2 + rejected 2 = 4: records lost or counted twice"
    ]
    assert book_problems([_vl(**{out.VST_REJECTED_BY_REASON: {CORRUPT_IMAGE: 1}})]) == [
        "d / t: 2 records rejected but 1 by reason {'corrupt_image': 1}"
    ]
    assert book_problems([_vl(**{out.VST_ROWS: None})]) == [
        "d / t: stats counts (5, 3, 2, 4, None) and by reason ({'corrupt_image': 2}, {'empty_text': 1}) "
        "are not all integers"
    ]
    assert book_problems([_vl(**{out.VST_UNITS_REJECTED_BY_REASON: {EMPTY_TEXT: 1.0}})])[0].endswith(
        "are not all integers"
    )


def test_rejects_rows_are_at_least_the_stats_or_exactly_them_without_rejected_records() -> None:
    task = ("d", "t")
    # A rejected record may write more rows than the one it is counted by (several problems).
    assert vl_reject_problems([_vl()], {task: {CORRUPT_IMAGE: 3, EMPTY_TEXT: 1, MISSING_FIELD: 1}}) == []
    assert vl_reject_problems([_vl()], {task: {CORRUPT_IMAGE: 1, EMPTY_TEXT: 1}}) == [
        "d / t: 1 rejects rows of reason corrupt_image, the stats count 2 rejected records + 0 lost pairs "
        "(at least that many rows)"
    ]
    kept_only = _vl(**{out.VST_RECORDS_KEPT: 5, out.VST_RECORDS_REJECTED: 0, out.VST_REJECTED_BY_REASON: {}})
    assert vl_reject_problems([kept_only], {task: {EMPTY_TEXT: 1}}) == []
    assert vl_reject_problems([kept_only], {task: {EMPTY_TEXT: 2, MISSING_FIELD: 1}}) == [
        "d / t: 2 rejects rows of reason empty_text, the stats count 0 rejected records + 1 lost pairs",
        "d / t: 1 rejects rows of reason missing_field, the stats count 0 rejected records + 0 lost pairs",
    ]
    assert vl_reject_problems([kept_only], {}) == [
        "d / t: 0 rejects rows of reason empty_text, the stats count 0 rejected records + 1 lost pairs"
    ]


def test_a_tampered_stats_count_fails_verification(vl_output: pathlib.Path, tmp_path: pathlib.Path) -> None:
    copy = _copy(vl_output, tmp_path)
    records = read_stats_records(str(copy))
    records[0][out.VST_ROWS] = 4
    records[0][out.VST_RECORDS_KEPT] = 11
    assert verify_output(str(copy), records) == [
        "vqav2 / vqav2: the stats count 4 sequences, the manifest lists 3 rows",
        "vqav2 / vqav2: 12 records read but kept 11 + rejected 0 = 11: records lost or counted twice",
    ]


def test_a_rejects_shard_the_stats_do_not_count_fails_verification(
    vl_output: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    copy = _copy(vl_output, tmp_path)
    relative = "rejects/vqav2/vqav2/part-00000-000.parquet"
    path = copy.joinpath(*relative.split("/"))
    path.parent.mkdir(parents=True)
    row = {out.DATASET: "vqav2", out.TASK: "vqav2", out.EPISODE_ID: "k", out.SOURCE_FILE: "f",
           out.REASON: EMPTY_TEXT, out.FIELD: None, out.DETAIL: "empty"}
    pq.write_table(pa.Table.from_pylist([row], schema=out.REJECTS_SCHEMA), path)
    data = path.read_bytes()
    manifest = json.loads((copy / out.MANIFEST_FILE).read_text())
    manifest[out.M_REJECTS] = [{out.S_PATH: relative, out.S_DATASET: "vqav2", out.S_TASK: "vqav2", out.S_ROWS: 1,
                                out.S_BYTES: len(data), out.S_SHA256: hashlib.sha256(data).hexdigest()}]
    (copy / out.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert verify_output(str(copy), read_stats_records(str(copy))) == [
        "vqav2 / vqav2: 1 rejects rows of reason empty_text, the stats count 0 rejected records + 0 lost pairs"
    ]
