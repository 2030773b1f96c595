"""pipeline/vl_passes.py: the whole vision-language job on the bundled VQAv2 sample (spec
section 8): the manifest describes the data and lists the shards, whose rows carry
their source keys and no prompts; every record read is counted."""

from __future__ import annotations

import json
import pathlib

import pyarrow.parquet as pq
import pytest

from pipeline.job import run_job
from planning.options import JobOptions
from schemas import output as out
from schemas.vl import KIND_VQA

DATASET = "vqav2"


@pytest.fixture(scope="module")
def vqav2_output(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    output = tmp_path_factory.mktemp("vqav2")
    run_job(JobOptions(dataset=DATASET, output_dir=str(output)), beam_args=["--runner=DirectRunner"])
    return output


def test_manifest_describes_the_vision_language_data(vqav2_output: pathlib.Path) -> None:
    manifest = json.loads((vqav2_output / out.MANIFEST_FILE).read_text())
    description = manifest[out.M_VISION_LANGUAGE][DATASET]
    assert (description["kind"], description["format"], description["prompt_fraction"]) == (KIND_VQA, "parquet", 0.0)
    # vqav2's Table 1 share of the whole mix, not rescaled: readers renormalize over outputs.
    assert manifest[out.M_SAMPLING_WEIGHTS] == {DATASET: {"weight": 0.0067, "tasks": {DATASET: 1.0}}}
    shards = manifest[out.M_SHARDS]
    assert shards and all(s[out.S_PATH].startswith(f"{out.SEQUENCES_DIR}/{DATASET}/") for s in shards)
    assert all((vqav2_output / s[out.S_PATH]).is_file() for s in shards)
    (stats,) = json.loads((vqav2_output / out.STATS_JSON_FILE).read_text())[out.SJ_TASKS]
    # The bundled sample: 12 questions, each with an answer and a decodable image.
    assert (stats[out.VST_RECORDS_READ], stats[out.VST_RECORDS_KEPT], stats[out.VST_RECORDS_REJECTED]) == (12, 12, 0)
    assert stats[out.VST_ROWS] == sum(s[out.S_ROWS] for s in shards)


def test_rows_carry_source_keys_and_no_prompts(vqav2_output: pathlib.Path) -> None:
    manifest = json.loads((vqav2_output / out.MANIFEST_FILE).read_text())
    table = pq.read_table([vqav2_output / s[out.S_PATH] for s in manifest[out.M_SHARDS]][0])
    assert out.SOURCE_KEYS in table.column_names
    rows = table.to_pylist()
    assert rows and all(row[out.SOURCE_KEYS] for row in rows)
    assert all(not any(row[out.IS_PROMPT]) for row in rows)
    assert all(row[out.PROMPT_EPISODE_ID] is None for row in rows)
    # Each row is named by its first unit's record key.
    assert all(row[out.SOURCE_KEYS][0].startswith(f"{row[out.EPISODE_ID]}#") for row in rows)
