"""formats/dataset_card.py: a finished output is a Hugging Face dataset directory (issue 17).

The job's own output (bundled Atari Pong samples) loads with `datasets.load_dataset(<dir>)`
and nothing else, every config of the card loads, pyarrow reads `<dir>/sequences`, DuckDB's
sequences glob counts the sequences, and the card is the same bytes in two directories.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from audit.verify import verify_output
from formats.dataset_card import (
    REJECTS_CONFIG,
    SEE_THE_SOURCE,
    card_configs,
    render_card,
)
from formats.stats_files import read_stats_records
from pipeline.job import run_job
from planning.options import JobOptions
from schemas import output as out

GOLDEN = Path(__file__).parent / "golden" / "dataset_card.md"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same job written to two directories (Atari Pong samples)."""
    dirs = []
    for name in ("first", "second"):
        output = tmp_path_factory.mktemp(name) / "out"
        run_job(JobOptions(dataset="atari", output_dir=str(output), tasks=("Pong*",)))
        dirs.append(output)
    return dirs[0], dirs[1]


def _manifest(output: Path) -> dict[str, Any]:
    return json.loads((output / out.MANIFEST_FILE).read_text())


def _rows(manifest: dict[str, Any]) -> int:
    return sum(s[out.S_ROWS] for s in manifest[out.M_SHARDS])


def test_the_card_is_listed_checked_and_identical_across_reruns(outputs: tuple[Path, Path]) -> None:
    first, second = outputs
    card = (first / out.CARD_FILE).read_bytes()
    assert card == (second / out.CARD_FILE).read_bytes()
    text = card.decode()
    assert str(first) not in text and str(second) not in text and "/tmp" not in text
    assert text.startswith("---\n") and "\nconfigs:\n" in text
    manifest = _manifest(first)
    assert manifest[out.M_CARD][out.S_PATH] == out.CARD_FILE and manifest[out.M_CARD][out.S_BYTES] == len(card)
    assert verify_output(str(first), read_stats_records(str(first))) == []
    assert manifest[out.M_STATS][out.M_STATS_VIEWER] == out.VIEWER_FILE
    assert "eprint={2006.13888}" in text  # the registry's citation
    assert "| `atari` | `rlu_atari/Pong_run_1` | `atari--rlu_atari__Pong_run_1` | 12 | 1 | 11 | 0 |" in text


def _load(path: Path, *args: str, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return datasets.load_dataset(str(path), *args)


def test_load_dataset_with_the_path_alone_gives_the_sequences(
    outputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = outputs
    manifest = _manifest(first)
    loaded = _load(first, cache=tmp_path, monkeypatch=monkeypatch)
    assert list(loaded) == ["train"] and loaded["train"].num_rows == _rows(manifest) > 0
    assert loaded["train"].column_names == out.SEQUENCE_SCHEMA.names
    for config in card_configs(manifest)[1:]:
        table = _load(first, config["config_name"], cache=tmp_path, monkeypatch=monkeypatch)["train"]
        assert table.num_rows > 0, config["config_name"]
    episodes = _load(first, "episodes", cache=tmp_path, monkeypatch=monkeypatch)["train"]
    assert episodes.num_rows == 12


def test_pyarrow_duckdb_and_polars_read_the_sequences_directory(outputs: tuple[Path, Path]) -> None:
    first, _ = outputs
    rows = _rows(_manifest(first))
    table = pq.read_table(first / out.SEQUENCES_DIR)
    assert table.num_rows == rows
    field = table.schema.field(out.LOCAL_POSITIONS)
    assert b"511" in field.metadata[out.FIELD_DESCRIPTION]  # field metadata survives the write
    glob = (first / out.SEQUENCES_DIR).as_posix() + "/**/*.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0] == rows
    polars = pytest.importorskip("polars")
    assert polars.scan_parquet(glob).select(polars.len()).collect().item() == rows


# --- The card as a pure function of a manifest and records. ---


def _synthetic_manifest(dataset: str = "atari") -> dict[str, Any]:
    shard = lambda task, d, rows: {  # noqa: E731
        out.S_PATH: f"sequences/{dataset}/{d}/part-00000-000.parquet", out.S_DATASET: dataset,
        out.S_TASK: task, out.S_ROWS: rows, out.S_TOKENS: rows * 100, out.S_BYTES: 1, out.S_SHA256: "0" * 64,
    }
    return {
        out.M_CONFIG: {"dataset": dataset, "sequence_length": 1024},
        out.M_CONFIG_HASH: "f" * 64,
        out.M_VOCABULARY: {"name": "gato", "discrete_offset": 0, "continuous_offset": 32000, "separator": 33024,
                           "pad": 33025, "image_placeholder": 33026, "vocab_size": 33027, "text_size": 32000,
                           "num_bins": 1024},
        out.M_SEQUENCE_LENGTH: 1024,
        out.M_IMAGE_NORMALIZATION: "((p / 255) * 2 - 1) / 4",
        out.M_SHARDS: [shard("rlu_atari/Pong_run_1", "rlu_atari__Pong_run_1", 3),
                       shard("rlu_atari/Breakout_run_1", "rlu_atari__Breakout_run_1", 5)],
        out.M_REJECTS: [{out.S_PATH: f"rejects/{dataset}/rlu_atari__Pong_run_1/part-00000-000.parquet"}],
        out.M_STATS: {out.M_STATS_PARQUET: out.STATS_PARQUET_FILE, out.M_STATS_JSON: out.STATS_JSON_FILE,
                      out.M_STATS_EPISODES: out.STATS_EPISODES_FILE},
    }


def _record(task: str) -> dict[str, Any]:
    return {out.DATASET: "atari", out.TASK: task, out.ST_EPISODES_READ: 10, out.ST_KEPT: 3, out.ST_DROPPED: 6,
            out.ST_REJECTED: 1, out.ST_WINDOW: 1, out.ST_EXPERT_RETURN: 21.0, out.ST_THRESHOLD: 16.8,
            out.ST_SEQUENCES: 3, out.ST_SEQUENCE_TOKENS: 300}


def test_the_card_matches_its_golden_file() -> None:
    card = render_card(_synthetic_manifest(), [_record("rlu_atari/Pong_run_1"), _record("rlu_atari/Breakout_run_1")])
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(card)
    assert card == GOLDEN.read_text()


def test_configs_name_each_dataset_and_task_and_the_rejects_only_when_there_are_some() -> None:
    manifest = _synthetic_manifest()
    names = [c["config_name"] for c in card_configs(manifest)]
    assert names == ["default", "atari", "atari--rlu_atari__Breakout_run_1", "atari--rlu_atari__Pong_run_1",
                     "episodes", "stats", REJECTS_CONFIG]
    stats = next(c for c in card_configs(manifest) if c["config_name"] == "stats")
    assert out.ST_REJECTED_BY_REASON not in stats["columns"]  # a map: `datasets` cannot read it
    assert REJECTS_CONFIG not in [c["config_name"] for c in card_configs({**manifest, out.M_REJECTS: []})]
    reserved = [c["config_name"] for c in card_configs(_synthetic_manifest("stats"))]
    assert len(set(reserved)) == len(reserved) and "stats--sequences" in reserved


def test_a_dataset_outside_the_registry_says_see_the_source() -> None:
    card = render_card(_synthetic_manifest("my_robot"), [])
    assert f"- Licence: {SEE_THE_SOURCE}" in card and f"- Citation: {SEE_THE_SOURCE}" in card
