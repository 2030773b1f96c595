"""pipeline/passes.py: `Pass1`, `Pass2` and `Outputs` on a small TFDS dataset, wired exactly as
`pipeline/job.py::build_pipeline` wires them: pass 1's thresholds are the expert return of
its returns in collection order, pass 2 accounts for every episode read (read = kept +
dropped + rejected), and the manifest lists exactly the shards on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from formats.output_dir import prepare_output_dir
from pipeline.job import build_pipeline
from pipeline.passes import (
    DECISIONS,
    KEPT,
    MANIFEST,
    POOLS,
    REJECTS,
    RETURNS,
    SEQUENCE_COUNTS,
    SHARDS,
    THRESHOLDS,
    WORK,
    JobParts,
    Outputs,
    Pass1,
    Pass2,
)
from planning.options import JobOptions
from planning.plan import plan_work
from planning.work import Plan
from schemas.output import M_REJECTS, M_SHARDS, MANIFEST_FILE, REJECTS_DIR, S_PATH, S_ROWS, SEQUENCES_DIR
from tests import tfds_fixtures as fx
from transforms.errors import NON_FINITE
from transforms.expert_filter import expert_return
from transforms.rlds_rules import RLDS_IS_LAST

RUNNER = "BundleBasedDirectRunner"
TASK = ("metaworld", "gato_metaworld/reach-v3")
# Episode i's return; W = 1 (11 valid episodes), E = 10, threshold 8.
RETURN_OF = [1.0, 9.0, 10.0, 2.0, 9.5, 3.0, 8.5, 9.8, 4.0, 10.0, 8.2, 5.0]
NO_IS_LAST = "3"  # rejected by Validate: no return in pass 1, never filtered
NAN_STATE = "7"  # kept by the filter, then rejected by Tokenize
KEPT_BY_FILTER = {"1", "2", "4", "6", "7", "9", "10"}
DROPPED = {"0", "5", "8", "11"}

# The in-process runner shares this module's globals: collected outputs land here.
_SINK: dict[str, Any] = {}


def _keep(values: list[Any], name: str) -> None:
    _SINK[name] = values


def _episode(i: int) -> dict[str, Any]:
    episode = fx.metaworld_episode(i, 4 + i % 4, is_last=str(i) != NO_IS_LAST)
    episode["episode_return"] = np.float32(RETURN_OF[i])
    if str(i) == NAN_STATE:
        episode["steps"]["observation"]["state"][1, 0] = np.nan
    return episode


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    root = tmp_path_factory.mktemp("passes")
    episodes = [_episode(i) for i in range(len(RETURN_OF))]
    fx.write_rlds_dataset(root, "gato_metaworld", "reach-v3", fx.metaworld_features(), episodes, num_shards=3)
    return plan_work("metaworld", data_dir=str(root))


def _options(plan: Plan, output_dir: Path) -> JobOptions:
    data_dir = Path(plan.work_items[0].builder_dir).parents[2]  # <data_dir>/<tfds name>/<config>/<version>
    return JobOptions(dataset="metaworld", output_dir=str(output_dir), data_dir=str(data_dir),
                      rows_per_shard=4, prompt_pool_size=4)


def _wire(root: beam.Pipeline, parts: JobParts) -> tuple[dict, dict, dict]:
    """The three composites applied as `build_pipeline` applies them."""
    work = root | "WorkItems" >> beam.Create(parts.plan.work_items, reshuffle=False)
    pass1 = work | "Pass1" >> Pass1(parts)
    pass2 = {WORK: work, THRESHOLDS: pass1[THRESHOLDS], POOLS: pass1[POOLS]} | "Pass2" >> Pass2(parts)
    outputs = {**pass2, RETURNS: pass1[RETURNS], THRESHOLDS: pass1[THRESHOLDS]} | "Outputs" >> Outputs(parts)
    return pass1, pass2, outputs


def _labels(root: beam.Pipeline) -> list[str]:
    """Full labels of every applied transform, depth first."""
    found: list[str] = []

    def visit(node: Any) -> None:
        for part in node.parts:
            found.append(part.full_label)
            visit(part)

    visit(root.transforms_stack[0])
    return found


@pytest.fixture(scope="module")
def job(plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(output dir, every collected output) of one run of the three passes."""
    output_dir = tmp_path_factory.mktemp("out")
    parts = JobParts(options=_options(plan, output_dir), plan=plan)
    prepare_output_dir(str(output_dir), overwrite=False)
    p = TestPipeline(runner=RUNNER)
    pass1, pass2, outputs = _wire(p, parts)
    collected = {f"pass1.{k}": v for k, v in pass1.items()}
    collected |= {f"pass2.{k}": v for k, v in pass2.items()}
    collected |= {f"outputs.{k}": v for k, v in outputs.items()}
    for name, pcoll in collected.items():
        _ = pcoll | f"Collect {name}" >> beam.combiners.ToList() | f"Keep {name}" >> beam.Map(_keep, name)
    _SINK.clear()
    p.run().wait_until_finish()
    return output_dir, dict(_SINK)


def test_the_test_wiring_is_build_pipelines(plan: Plan, tmp_path: Path) -> None:
    ours, theirs = beam.Pipeline(runner=RUNNER), beam.Pipeline(runner=RUNNER)
    parts = JobParts(options=_options(plan, tmp_path), plan=plan)
    _wire(ours, parts)
    build_pipeline(theirs, parts.options, plan=plan)
    assert _labels(ours) == _labels(theirs)


def test_build_pipeline_has_the_three_passes_at_the_top(plan: Plan, tmp_path: Path) -> None:
    root = beam.Pipeline(runner=RUNNER)
    build_pipeline(root, _options(plan, tmp_path), plan=plan)
    assert [t.full_label for t in root.transforms_stack[0].parts] == ["WorkItems", "Pass1", "Pass2", "Outputs"]
    labels = set(_labels(root))
    assert {"Pass1/ReadReturns", "Pass1/ExpertReturn", "Pass1/PromptPools"} <= labels
    assert {"Pass2/Read", "Pass2/Validate", "Pass2/Filter", "Pass2/Tokenize", "Pass2/Sequence", "Pass2/Write"} <= labels
    assert {"Outputs/WriteRejects", "Outputs/Stats", "Outputs/Manifest"} <= labels


def test_pass1_thresholds_are_the_expert_return_of_its_returns_in_collection_order(job) -> None:
    _, out = job
    returns = sorted(out[f"pass1.{RETURNS}"], key=lambda r: r.key.sort_key())
    assert [r.key.episode_id for r in returns] == [str(i) for i in range(len(RETURN_OF)) if str(i) != NO_IS_LAST]
    assert [r.value for r in returns] == [float(np.float32(v)) for i, v in enumerate(RETURN_OF) if str(i) != NO_IS_LAST]
    [(task, threshold)] = out[f"pass1.{THRESHOLDS}"]
    assert task == TASK
    assert threshold == expert_return([r.value for r in returns], fraction=0.8, cap=1000)
    assert (threshold.n, threshold.window, threshold.expert_return, threshold.threshold) == (11, 1, 10.0, 8.0)
    [(task, pool)] = out[f"pass1.{POOLS}"]
    assert task == TASK and 0 < len(pool.candidates) <= 4


def test_pass2_accounts_for_every_episode_read(job) -> None:
    _, out = job
    decisions = {d.key.episode_id: d.kept for d in out[f"pass2.{DECISIONS}"]}
    rejects = sorted((r.episode_id, r.reason) for r in out[f"pass2.{REJECTS}"])
    kept = {k.key.episode_id for k in out[f"pass2.{KEPT}"]}
    assert {e for e, k in decisions.items() if k} == KEPT_BY_FILTER
    assert {e for e, k in decisions.items() if not k} == DROPPED
    assert rejects == [(NO_IS_LAST, RLDS_IS_LAST), (NAN_STATE, NON_FINITE)]
    assert kept == KEPT_BY_FILTER - {NAN_STATE}
    # read = kept + dropped + rejected, each episode exactly once.
    dropped = {e for e, k in decisions.items() if not k}
    rejected = {e for e, _ in rejects}
    assert len(kept) + len(dropped) + len(rejected) == len(RETURN_OF)
    assert kept | dropped | rejected == {str(i) for i in range(len(RETURN_OF))}
    counts = out[f"pass2.{SEQUENCE_COUNTS}"]
    assert len(counts) == len(kept) and {task for task, _ in counts} == {TASK}
    [shards] = out[f"pass2.{SHARDS}"]
    assert sum(s[S_ROWS] for s in shards) == sum(c.sequences for _, c in counts) > 0


def test_outputs_write_a_manifest_listing_exactly_the_shards_on_disk(job) -> None:
    output_dir, out = job
    [manifest_path] = out[f"outputs.{MANIFEST}"]
    assert Path(manifest_path) == output_dir / MANIFEST_FILE
    manifest = json.loads(Path(manifest_path).read_text())
    on_disk = {p.relative_to(output_dir).as_posix() for p in (output_dir / SEQUENCES_DIR).rglob("*.parquet")}
    listed = {s[S_PATH] for s in manifest[M_SHARDS]}
    assert listed == on_disk and len(on_disk) > 1  # rows_per_shard=4 splits them
    [shards] = out[f"pass2.{SHARDS}"]
    assert listed == {s[S_PATH] for s in shards}
    for entry in manifest[M_SHARDS]:
        assert pq.read_metadata(output_dir / entry[S_PATH]).num_rows == entry[S_ROWS]
    rejects_on_disk = {p.relative_to(output_dir).as_posix() for p in (output_dir / REJECTS_DIR).rglob("*.parquet")}
    assert {s[S_PATH] for s in manifest[M_REJECTS]} == rejects_on_disk and len(rejects_on_disk) == 1
    assert sum(s[S_ROWS] for s in manifest[M_REJECTS]) == 2
    assert not (output_dir / "_tmp").exists() or not any((output_dir / "_tmp").rglob("*.parquet"))
