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
# Episode i's return; W = 1 (10 usable episodes), E = 10, threshold 8.
RETURN_OF = [1.0, 9.0, 10.0, 2.0, 9.5, 3.0, 8.5, 9.8, 4.0, 10.0, 8.2, 5.0]
NO_IS_LAST = "3"  # rejected by Validate: no return in pass 1, never filtered
NAN_STATE = "7"  # return 9.8 but NaN state: no return in pass 1, rejected by the Filter
KEPT_BY_FILTER = {"1", "2", "4", "6", "9", "10"}
UNUSABLE = {NO_IS_LAST, NAN_STATE}
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
    assert {"Pass1/Read", "Pass1/Verdict", "Pass1/UniqueIds", "Pass1/ExpertReturn", "Pass1/TaskVerdicts",
            "Pass1/PromptPools"} <= labels
    assert {"Pass2/Read", "Pass2/Validate", "Pass2/Filter", "Pass2/Tokenize", "Pass2/Sequence", "Pass2/Write"} <= labels
    assert {"Outputs/WriteRejects", "Outputs/Stats", "Outputs/Manifest"} <= labels


def test_pass1_thresholds_are_the_expert_return_of_its_returns_in_collection_order(job) -> None:
    _, out = job
    returns = sorted(out[f"pass1.{RETURNS}"], key=lambda r: r.key.sort_key())
    assert [r.key.episode_id for r in returns] == [str(i) for i in range(len(RETURN_OF)) if str(i) not in UNUSABLE]
    assert [r.value for r in returns] == [float(np.float32(v)) for i, v in enumerate(RETURN_OF) if str(i) not in UNUSABLE]
    [(task, verdicts)] = out[f"pass1.{THRESHOLDS}"]
    assert task == TASK and verdicts.threshold == 8.0
    threshold = verdicts.expert
    assert threshold == expert_return([r.value for r in returns], fraction=0.8, cap=1000)
    assert (threshold.n, threshold.window, threshold.expert_return, threshold.threshold) == (10, 1, 10.0, 8.0)
    assert [(reject.episode_id, reject.reason) for reject in verdicts.rejects.values()] == [(NAN_STATE, NON_FINITE)]
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
    assert kept == KEPT_BY_FILTER
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


# --- Faults pass 1 must judge exactly as pass 2 does (issue 13: defects 4, 5, 6 and 15) ---
# One dataset with each fault: before the fix the inf return crashed ExpertReturn (4); once
# past it, the NaN episode's huge return set E and dropped every valid episode (5); the
# repeated id crashed the statistics after the shards were written (6); and the frame that
# changes shape had a pass-1 return but a pass-2 reject (15, here at tokenization level).

FAULT_TASK = "faulty_robot/stack"
HUGE_NAN_JOINTS = 1  # a huge return, NaN joints: pass 2's tokenization rejects it
INF_RETURN = 3  # one reward is inf: the return is not finite
DUPLICATE = (2, 8)  # record 8 repeats episode 2's id, in the other shard
RESIZED_FRAME = 6  # the camera frame of step 1 changes shape mid-episode
# Valid: 0 (return 6), 4 (10), 5 (15), 7 (10), 9 (6); N = 5, W = 1, E = 15, threshold 12.


def _fault_features() -> Any:
    import tensorflow_datasets as tfds

    return fx.episode_features(
        {
            "observation": {
                "camera": tfds.features.Image(shape=(20, 24, 3)),
                "joints": tfds.features.Tensor(shape=(5,), dtype=np.float32),
            },
            "action": tfds.features.Tensor(shape=(3,), dtype=np.float32),
        },
        episode_id=np.int64,
    )


def _fault_episode(i: int) -> dict[str, Any]:
    n = 4 + i % 3  # rewards 0..n-1: return n(n-1)/2
    rng = np.random.default_rng([5, i])
    reward = np.arange(n, dtype=np.float32)
    joints = rng.normal(size=(n, 5)).astype(np.float32)
    if i == HUGE_NAN_JOINTS:
        reward *= 100.0
        joints[0, 2] = np.nan
    if i == INF_RETURN:
        reward[1] = np.inf
    return {
        "episode_id": DUPLICATE[0] if i == DUPLICATE[1] else i,
        "steps": {
            "observation": {
                "camera": rng.integers(0, 256, (n, 20, 24, 3), dtype=np.uint8),
                "joints": joints,
            },
            "action": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
            "reward": reward,
            **fx.flags(n),
        },
    }


def _resize_frame(shard: Path, record: int, step: int) -> None:
    """Replace one step's PNG of `record` by a 10x12 one: decoding it gives another shape."""
    import io

    from PIL import Image
    from tensorflow_datasets.proto import tf_example_pb2

    from formats.tfrecord import frame_record, iter_records

    with open(shard, "rb") as f:
        records = list(iter_records(f))
    example = tf_example_pb2.Example.FromString(records[record])
    png = io.BytesIO()
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(png, format="PNG")
    example.features.feature["steps/observation/camera"].bytes_list.value[step] = png.getvalue()
    records[record] = example.SerializeToString()
    shard.write_bytes(b"".join(frame_record(r) for r in records))


def _fault_plan(root: Path, episodes: list[dict[str, Any]]) -> Plan:
    name, config = FAULT_TASK.split("/")
    fx.write_rlds_dataset(root, name, config, _fault_features(), episodes, num_shards=2)
    return plan_work(f"rlds:{root}", data_dir="")


@pytest.fixture(scope="module")
def fault_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    root = tmp_path_factory.mktemp("faults")
    plan = _fault_plan(root, [_fault_episode(i) for i in range(10)])
    second = Path(plan.work_items[1].shard_path)  # records 5..9
    _resize_frame(second, RESIZED_FRAME - 5, 1)
    return plan


def _run(plan: Plan, output_dir: Path, **flags: Any) -> dict[str, Any]:
    root = Path(plan.work_items[0].builder_dir).parents[2]  # <root>/<name>/<config>/<version>
    options = JobOptions(dataset=f"rlds:{root}", output_dir=str(output_dir), data_dir="", rows_per_shard=4,
                         prompt_pool_size=4, **flags)
    parts = JobParts(options=options, plan=plan)
    prepare_output_dir(str(output_dir), overwrite=False)
    p = TestPipeline(runner=RUNNER)
    pass1, pass2, outputs = _wire(p, parts)
    collected = {f"pass1.{k}": v for k, v in pass1.items()} | {f"pass2.{k}": v for k, v in pass2.items()}
    collected |= {f"outputs.{k}": v for k, v in outputs.items()}
    for name, pcoll in collected.items():
        _ = pcoll | f"Collect {name}" >> beam.combiners.ToList() | f"Keep {name}" >> beam.Map(_keep, name)
    _SINK.clear()
    p.run().wait_until_finish()
    return dict(_SINK)


def test_rejects_never_set_the_expert_return_and_every_episode_is_counted_once(fault_plan, tmp_path) -> None:
    out = _run(fault_plan, tmp_path / "out")
    returns = sorted(out[f"pass1.{RETURNS}"], key=lambda r: r.key.sort_key())
    assert [(r.key.episode_id, r.value) for r in returns] == [("0", 6.0), ("4", 10.0), ("5", 15.0), ("7", 10.0), ("9", 6.0)]
    [(_, verdicts)] = out[f"pass1.{THRESHOLDS}"]
    assert (verdicts.expert.n, verdicts.expert.expert_return, verdicts.threshold) == (5, 15.0, 12.0)
    decisions = sorted((d.key.episode_id, d.kept) for d in out[f"pass2.{DECISIONS}"])
    assert decisions == [("0", False), ("4", False), ("5", True), ("7", False), ("9", False)]
    assert sorted(k.key.episode_id for k in out[f"pass2.{KEPT}"]) == ["5"]
    rejects = sorted((r.episode_id, Path(r.source_file).name[-14:], r.reason, r.field) for r in out[f"pass2.{REJECTS}"])
    first, second = (Path(item.shard_path).name[-14:] for item in fault_plan.work_items)
    assert rejects == [
        ("1", first, "non_finite", "observation/joints"),
        ("2", first, "duplicate_episode_id", "episode_id"),
        ("2", second, "duplicate_episode_id", "episode_id"),
        ("3", first, "non_finite_return", "reward"),
        ("6", second, "bad_shape", "observation/camera"),
    ]
    details = {r.source_file: r.detail for r in out[f"pass2.{REJECTS}"] if r.reason == "duplicate_episode_id"}
    for detail in details.values():  # each copy names both files and records
        assert all(item.source_file in detail for item in fault_plan.work_items), detail
        assert "record 2" in detail and "record 3" in detail, detail
    stats = json.loads((tmp_path / "out" / "stats" / "stats.json").read_text())["tasks"]
    [task] = stats
    assert (task["episodes_read"], task["kept"], task["dropped"], task["rejected"]) == (10, 1, 4, 5)
    assert task["rejected_by_reason"] == {"bad_shape": 1, "duplicate_episode_id": 2, "non_finite": 1, "non_finite_return": 1}
    assert (task["episodes_with_return"], task["expert_return"], task["threshold"]) == (5, 15.0, 12.0)


def test_strict_stops_at_a_duplicate_id_before_any_shard_is_written(tmp_path: Path) -> None:
    episodes = [_fault_episode(i) for i in (0, 4, 5, 7)]
    episodes[3]["episode_id"] = 4
    plan = _fault_plan(tmp_path / "data", episodes)
    with pytest.raises(ValueError, match=r"episode id '4'.*faulty_robot/stack") as error:
        _run(plan, tmp_path / "out", strict=True)
    for item in plan.work_items:
        assert item.source_file in str(error.value)
    assert not list((tmp_path / "out").rglob("*.parquet"))
