"""pipeline/job.py: `run_job` plans, checks and runs the three passes, returning the counters
per task (`<dataset>/<task>` -> `<stage>.<what>`); `counter_summary` and `format_summary`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from formats.output_dir import FinishedOutputError
from formats.tfds_shards import RETURN_STEP_FIELDS, ShardReader, read_returns, read_shard
from pipeline.job import build_pipeline, counter_summary, format_summary, run_job
from pipeline.runner import local_runner
from planning.options import SAMPLES_DATA_DIR, JobOptions
from planning.plan import plan_work
from schemas import output as out
from tests import tfds_fixtures as fx
from formats.stats_files import task_statistics
from transforms.expert_filter import TaskThreshold
from transforms.episode import WorkItem
from transforms.rlds_rules import RLDS_STEP_LENGTHS, check_rlds

REACH = "metaworld/gato_metaworld/reach-v3"


@pytest.fixture(scope="module")
def reach(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, int]]]:
    """(output dir, summary) of run_job on the bundled Meta-World reach samples."""
    output = tmp_path_factory.mktemp("reach") / "out"
    return output, run_job(JobOptions(dataset="metaworld", output_dir=str(output), tasks=("reach*",)))


def test_the_summary_has_one_entry_per_task_of_stage_counts(reach) -> None:
    output, summary = reach
    assert list(summary) == [REACH]
    counts = summary[REACH]
    assert all(re.fullmatch(r"[a-z0-9_]+\.[a-z_]+", name) for name in counts), sorted(counts)
    plan = plan_work("metaworld", data_dir=SAMPLES_DATA_DIR, tasks=("reach*",))
    episodes = [e for item in plan.work_items for e in read_shard(item, reader=ShardReader(item.builder_dir), spec=plan.dataset)]
    returns = [r for item in plan.work_items for r in read_returns(item, reader=ShardReader(item.builder_dir), spec=plan.dataset)]
    assert counts["read.episodes"] == len(episodes) == counts["stats.episodes_read"] > 0
    assert counts["read_pass1.returns"] == len(returns) == len(episodes)  # the samples are clean
    assert counts["filter.kept"] + counts["filter.dropped"] == len(episodes)
    assert counts["tokenize.episodes"] == counts["filter.kept"] == counts["stats.kept"]
    assert counts["stats.dropped"] == counts["filter.dropped"] and counts.get("stats.rejected", 0) == 0
    assert "validate.rejected" not in counts and "tokenize.rejected" not in counts
    assert counts["sequence.sequences"] == counts["sequence.prompted_sequences"] + counts["sequence.unprompted_sequences"]
    manifest = json.loads((output / out.MANIFEST_FILE).read_text())
    assert sum(s[out.S_ROWS] for s in manifest[out.M_SHARDS]) == counts["sequence.sequences"]
    assert sum(s[out.S_TOKENS] for s in manifest[out.M_SHARDS]) == counts["sequence.sequence_tokens"]


def test_a_finished_output_is_refused_without_overwrite(reach) -> None:
    output, _ = reach
    with pytest.raises(FinishedOutputError, match="already holds a finished output"):
        run_job(JobOptions(dataset="metaworld", output_dir=str(output), tasks=("reach*",)))


def _drop_last_joint_row(shard: Path, record: int) -> None:
    """Rewrite one record so that `observation/joints` has one step fewer than the flags:
    a layout TFDS refuses to write but a foreign writer can produce."""
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
    example = tf.train.Example.FromString(records[record])
    values = example.features.feature["steps/observation/joints"].float_list.value
    del values[len(values) - 5 :]
    records[record] = example.SerializeToString()
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for r in records:
            writer.write(r)


def test_episode_broken_only_in_fields_pass_1_reads_light_gets_no_return_and_counts_as_rejected(tmp_path: Path) -> None:
    root = tmp_path / "data"
    episodes = [fx.novel_episode(i, n) for i, n in enumerate((3, 4, 5))]
    builder = fx.write_rlds_dataset(root, "my_robot", "stacking", fx.novel_features(), episodes)
    (shard,) = fx.shard_files(builder)
    _drop_last_joint_row(shard, 1)
    plan = plan_work(f"rlds:{root}", data_dir="")
    (item,) = plan.work_items
    light = list(read_returns(item, reader=ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS), spec=plan.dataset))
    assert [r.key.episode_id for r in light] == ["0", "1", "2"]
    (broken,) = [r for r in read_shard(item, reader=ShardReader(item.builder_dir), spec=plan.dataset) if r.key.episode_id == "1"]
    with pytest.raises(ValueError, match="observation/joints"):
        check_rlds(broken)

    output = tmp_path / "out"
    summary = run_job(JobOptions(dataset=f"rlds:{root}", output_dir=str(output), data_dir="", no_filter=True))
    (stats,) = json.loads((output / "stats" / "stats.json").read_text())["tasks"]
    assert (stats[out.ST_EPISODES_READ], stats[out.ST_KEPT], stats[out.ST_REJECTED]) == (3, 2, 1)
    assert stats[out.ST_REJECTED_BY_REASON] == {RLDS_STEP_LENGTHS: 1}
    # Its flags and rewards are fine, so a light read would give it a return; pass 1 reaches
    # pass 2's verdict instead (transforms/verdict.py), so only the two usable ones have one.
    assert stats[out.ST_EPISODES_WITH_RETURN] == 2
    [(task, counts)] = summary.items()
    assert task == f"{item.dataset}/my_robot/stacking"
    assert (counts["read.episodes"], counts["validate.rejected"], counts["filter.kept"]) == (3, 1, 2)


def test_stats_count_an_episode_with_a_return_rejected_by_pass_2_as_rejected() -> None:
    # The books behind the run above (formats/stats_files.py), with the same three episodes.
    task = ("d", "t")
    returns = [(((i,), "f", i), str(i), float(i), "f") for i in range(3)]  # sort key: (order key, file, record)
    threshold = TaskThreshold(n=3, window=3, expert_return=1.0, threshold=-1.0, window_start=0, fraction=0.8, cap=1000)
    reject = ("1", "f", RLDS_STEP_LENGTHS, "observation/joints", "lengths differ")
    record, table = task_statistics(
        task,
        threshold=threshold,
        returns=returns,
        decisions=[("0", True, "no_filter"), ("2", True, "no_filter")],
        kept=[("0", 0.0, 2, 10), ("2", 2.0, 2, 10)],
        rejects=[reject],
    )
    assert (record[out.ST_EPISODES_READ], record[out.ST_KEPT], record[out.ST_REJECTED]) == (3, 2, 1)
    assert record[out.ST_EPISODES_WITH_RETURN] == 3
    assert table.column(out.EP_DECISION).to_pylist() == [out.DECISION_KEPT, out.DECISION_REJECTED, out.DECISION_KEPT]


def _counter(namespace: str, name: str, committed: int | None, attempted: int | None = None) -> Any:
    return SimpleNamespace(
        key=SimpleNamespace(metric=SimpleNamespace(namespace=namespace, name=name)),
        committed=committed, attempted=attempted,
    )


class _Result:
    def __init__(self, counters: list[Any]) -> None:
        self._counters = counters

    def metrics(self) -> Any:
        return SimpleNamespace(query=lambda: {"counters": self._counters})


def test_counter_summary_groups_per_task_by_stage_and_what() -> None:
    result = _Result([
        _counter("gato.read", "atari/rlu_atari/Pong_run_1/episodes", 7),
        _counter("gato.read", "atari/rlu_atari/Pong_run_1/episodes", 2),  # another step: summed
        _counter("gato.validate", "atari/rlu_atari/Pong_run_1/rejected", None, 1),  # no committed: attempted
        _counter("gato.filter", "dmlab/explore/kept", 3),
        _counter("beam", "elements", 99),  # no task: left out
    ])
    assert counter_summary(result) == {
        "atari/rlu_atari/Pong_run_1": {"read.episodes": 9, "validate.rejected": 1},
        "dmlab/explore": {"filter.kept": 3},
    }


def test_format_summary() -> None:
    assert format_summary({}) == "  (no counters)"
    summary = {"b/t": {"read.episodes": 2, "filter.kept": 1}, "a/t": {"read.episodes": 3}}
    assert format_summary(summary) == "  a/t: read.episodes=3\n  b/t: filter.kept=1, read.episodes=2"


# --- One writer per output directory; --overwrite replaces an output only when the new one is whole. ---


def _hashes(root: Path) -> dict[str, str]:
    import hashlib

    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_finished_job_leaves_no_claim_and_no_staging_directory(reach) -> None:
    output, _ = reach
    assert not (output / out.CLAIM_FILE).exists() and not (output / out.STAGING_DIR).exists()
    assert sorted(p.name for p in output.iterdir()) == [
        out.CARD_FILE, out.MANIFEST_FILE, "report.html", "sequences", "stats", out.VIEWER_FILE
    ]
    # The manifest names no location (planning/options.py), so a moved output stays true.
    assert str(output) not in (output / out.MANIFEST_FILE).read_text()


def test_a_second_job_on_a_claimed_output_dir_is_refused_before_writing(tmp_path: Path) -> None:
    # Issue 13, defect 1: another job (alive: this process) holds the directory.
    from formats.claim import ClaimedOutputError, take_claim

    output = tmp_path / "out"
    claim = take_claim(str(output))
    with pytest.raises(ClaimedOutputError, match=f"is claimed by run {claim.run_id}"):
        run_job(JobOptions(dataset="metaworld", output_dir=str(output), tasks=("reach*",), seed=1))
    assert [p.name for p in output.iterdir()] == [out.CLAIM_FILE]


def test_a_failed_overwrite_keeps_the_old_output_and_a_rerun_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 13, defect 9: the old output stays valid until the new one is published.
    from formats import publish

    output = tmp_path / "out"
    options = JobOptions(dataset="metaworld", output_dir=str(output), tasks=("reach*",), overwrite=True)
    run_job(options)
    before = _hashes(output)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise ValueError("injected failure before publishing")

    monkeypatch.setattr(publish, "verify_shards", fail)
    with pytest.raises(Exception, match="injected failure before publishing"):
        run_job(options)
    assert _hashes(output) == before  # no claim, no staging directory, the old files intact
    monkeypatch.undo()
    run_job(options)
    assert _hashes(output) == before


class _NoMetricsResult:
    """What Beam's DataflowRunner returns for `--dry_run=True`: `metrics()` is not implemented."""

    def metrics(self) -> Any:
        raise NotImplementedError()


def test_a_runner_without_metrics_gives_an_empty_summary_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="pipeline.job"):
        assert counter_summary(_NoMetricsResult()) == {}
    assert "the runner reports no metrics" in caplog.text


def test_a_dry_run_on_the_local_runner_is_refused_before_anything(tmp_path: Path) -> None:
    # The local runner ignores --dry_run: it would run the whole job and write the output.
    with pytest.raises(ValueError, match=r"--dry_run=True: the local runner ignores it and would run the whole job"):
        run_job(JobOptions(dataset="metaworld", output_dir=str(tmp_path / "out")),
                beam_args=["--runner=DirectRunner", "--dry_run=True"])
    assert not (tmp_path / "out").exists()


DATAFLOW_REQUEST_LIMIT = 10 << 20  # bytes of a Dataflow job-creation request


def _rlu_atari_items() -> list[WorkItem]:
    """The shape of all of RL Unplugged Atari on GCS: 46 games x 5 runs x 100 shards."""
    root = "gs://my-bucket/tensorflow_datasets"
    items: list[WorkItem] = []
    for game in range(46):
        for run in range(1, 6):
            builder = f"{root}/rlu_atari/Game{game:02d}_run_{run}/1.3.0"
            for shard in range(100):
                items.append(WorkItem("atari", f"rlu_atari/Game{game:02d}_run_{run}", builder,
                                      f"{builder}/rlu_atari-train.tfrecord-{shard:05d}-of-00100",
                                      len(items), 3000 + shard, data_root=root))
    return items


def test_all_of_rl_unplugged_atari_fits_a_dataflow_job_request() -> None:
    sample = plan_work("atari", data_dir=SAMPLES_DATA_DIR)
    plan = dataclasses.replace(sample, work_items=tuple(_rlu_atari_items()))
    options = JobOptions(dataset="atari", data_dir="gs://my-bucket/tensorflow_datasets", output_dir="gs://b/out")
    root = beam.Pipeline(runner=local_runner(PipelineOptions([])))
    build_pipeline(root, options, plan=plan)
    size = len(root.to_runner_api().SerializeToString())
    # Beam pickles and compresses Create's elements: about 290 KB for these 23,000 items.
    assert size < DATAFLOW_REQUEST_LIMIT // 5, f"{size:,} bytes"
