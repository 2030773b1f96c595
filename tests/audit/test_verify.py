"""audit/verify.py: the books per task, and a finished output's files against its manifest."""

from __future__ import annotations

import hashlib
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

from audit.verify import book_problems, manifest_problems, verify_output
from schemas import output as out
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
