"""Pass 1 read light: returns from flags and rewards only, windows only of the chosen episodes.

The pools must be the pools of the old pass 1 (every episode decoded, validated and its
windows tokenized), including when a chosen episode offers no candidate (the fallback).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pickle
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline

from transforms.episode import EpisodeReturn, RawEpisode
from pipeline.job import run_job
from pipeline.prompt_pools import BuildPromptPools
from planning.text_model import DEFAULT_SENTENCEPIECE_MODEL
from planning.options import JobOptions
from planning.plan import plan_work
from planning.work import Plan
from formats.tfds_shards import RETURN_STEP_FIELDS, ShardReader, read_returns, read_shard
from pipeline.read_episodes import ReadEpisodes, ReadReturns
from pipeline.prompt_pools import PromptPools
from transforms.prompt_choice import CandidateSelection, short_selections
from transforms.expert_filter import TaskThreshold
from transforms.books import task_statistics
from pipeline.prompt_pools import PromptCandidatesFn
from transforms.task_tokenizer import TokenizerConfig
from pipeline.validate_episodes import ValidateEpisodes
from transforms.rlds_rules import RLDS_STEP_LENGTHS, check_rlds, episode_return
from transforms.steps import num_emitted_steps
from schemas import output as out
from schemas.fields import STEPS
from tests import tfds_fixtures as fx
from transforms.prompts import PromptPool
from transforms.sequence import SequenceConfig

RUNNER = "BundleBasedDirectRunner"
LENGTHS = (3, 4, 4, 5, 6, 9, 7)  # ids 1 and 2 tie on return (reward 0..n-1 summed)
NAN_EPISODE = 5  # the best return, but its joints are NaN: its windows do not tokenize


def _episode(i: int, n: int) -> dict[str, Any]:
    episode = fx.novel_episode(i, n)
    if i == NAN_EPISODE:
        episode["steps"]["observation"]["joints"][:] = np.nan
    return episode


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    root = tmp_path_factory.mktemp("prompt_pass")
    episodes = [_episode(i, n) for i, n in enumerate(LENGTHS)]
    fx.write_rlds_dataset(root, "my_robot", "stacking", fx.novel_features(), episodes, num_shards=3)
    return plan_work(f"rlds:{root}", data_dir="")


def _configs(plan: Plan) -> tuple[TokenizerConfig, SequenceConfig]:
    from schemas.vocab import get_layout

    tokenizer = TokenizerConfig(task_fields=plan.task_fields, sentencepiece_model=DEFAULT_SENTENCEPIECE_MODEL)
    sequencing = SequenceConfig(
        sequence_length=1024, prompt_fraction=0.25, prompt_budget=512, seed=3, layout=get_layout("gato")
    )
    return tokenizer, sequencing


def _canonical(value: Any) -> Any:
    """Pools as plain Python (numpy arrays as lists), so that equality is exact."""
    if dataclasses.is_dataclass(value):
        return (type(value).__name__, tuple((f.name, _canonical(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.shape, value.tolist())
    if isinstance(value, (tuple, list)):
        return tuple(_canonical(v) for v in value)
    return value


def _save(pools: list[tuple[Any, PromptPool]], path: Path) -> None:
    path.write_bytes(pickle.dumps({task: _canonical(pool) for task, pool in pools}))


def _pools(plan: Plan, capacity: int, path: Path, *, old: bool) -> dict[Any, Any]:
    tokenizer, sequencing = _configs(plan)
    spec = plan.dataset
    return_fn = functools.partial(episode_return, spec=spec)
    with TestPipeline(runner=RUNNER) as p:
        work = p | beam.Create(plan.work_items)
        if old:  # the pass 1 this replaces: every episode decoded, validated, windowed
            read = work | ReadEpisodes(spec)
            valid = read.episodes | ValidateEpisodes()
            pools = (
                valid.valid
                | beam.ParDo(PromptCandidatesFn(tokenizer, sequence=sequencing, return_fn=return_fn))
                | PromptPools(capacity)
            )
        else:
            returns = work | ReadReturns(spec, namespace="gato.test")
            pools = {"work": work, "returns": returns} | BuildPromptPools(
                spec, tokenizer=tokenizer, sequencing=sequencing, capacity=capacity
            )
        _ = pools | beam.combiners.ToList() | beam.Map(_save, path)
    return pickle.loads(path.read_bytes())


def test_light_returns_equal_full_ones(plan: Plan) -> None:
    light: list[EpisodeReturn] = []
    full: list[RawEpisode] = []
    for item in plan.work_items:
        light += read_returns(item, reader=ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS), spec=plan.dataset)
        full += [r for r in read_shard(item, reader=ShardReader(item.builder_dir), spec=plan.dataset)]
    assert [r.key for r in light] == [r.key for r in full]
    assert [r.value for r in light] == [episode_return(r, plan.dataset) for r in full]
    assert [r.value for r in light] == [n * (n - 1) / 2 for n in LENGTHS]
    assert [r.num_steps for r in light] == [num_emitted_steps(r) for r in full] == [n - 1 for n in LENGTHS]


def test_light_reader_decodes_only_flags_rewards_and_episode_fields(plan: Plan) -> None:
    item = plan.work_items[0]
    (_, decoded), *_ = ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS).episodes(item.shard_path)
    assert sorted(decoded[STEPS]) == ["is_first", "is_last", "is_terminal", "reward"]
    assert sorted(k for k in decoded if k != STEPS) == ["episode_id"]


def test_only_decodes_the_asked_records(plan: Plan) -> None:
    item = plan.work_items[0]
    reader = ShardReader(item.builder_dir)
    everything = list(reader.episodes(item.shard_path))
    assert len(everything) >= 2
    picked = list(reader.episodes(item.shard_path, only=[1]))
    assert [i for i, _ in picked] == [1]
    assert picked[0][1]["episode_id"] == everything[1][1]["episode_id"]
    assert list(reader.episodes(item.shard_path, only=[])) == []


@pytest.mark.parametrize("capacity", [1, 2, 3, 16])
def test_pools_equal_the_full_decode_ones(plan: Plan, capacity: int, tmp_path: Path) -> None:
    new = _pools(plan, capacity, tmp_path / "new", old=False)
    assert new == _pools(plan, capacity, tmp_path / "old", old=True)
    (pool,) = new.values()
    ids = [dict(c[1])["episode_id"] for c in dict(pool[1])["candidates"]]
    # Episode 5 has the best return but no usable windows: the next ones by return take its place.
    by_return = [6, 4, 3, 1, 2, 0] if capacity < 16 else None
    assert str(NAN_EPISODE) not in ids
    if by_return is not None:
        assert sorted(ids, key=int) == sorted((str(i) for i in by_return[:capacity]), key=int)
    else:
        assert len(ids) == len(LENGTHS) - 1


def test_short_selections_only_when_a_chosen_one_gave_nothing_and_more_exist() -> None:
    task = ("d", "t")
    key = object()
    chosen = CandidateSelection(keys=(key, key), episodes=5)  # type: ignore[arg-type]
    assert short_selections({task: chosen}, {task: 2}) == {}
    assert short_selections({task: chosen}, {task: 1}) == {task: chosen}
    assert short_selections({task: chosen}, {}) == {task: chosen}
    everyone = CandidateSelection(keys=(key, key), episodes=2)  # type: ignore[arg-type]
    assert short_selections({task: everyone}, {task: 1}) == {}


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


def test_episode_broken_only_in_unread_fields_has_a_return_and_counts_as_rejected(tmp_path: Path) -> None:
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
    run_job(JobOptions(dataset=f"rlds:{root}", output_dir=str(output), data_dir="", no_filter=True))
    (stats,) = json.loads((output / "stats" / "stats.json").read_text())["tasks"]
    assert (stats[out.ST_EPISODES_READ], stats[out.ST_KEPT], stats[out.ST_REJECTED]) == (3, 2, 1)
    assert stats[out.ST_REJECTED_BY_REASON] == {RLDS_STEP_LENGTHS: 1}
    assert stats[out.ST_EPISODES_WITH_RETURN] == 3  # its flags and rewards are fine


def test_stats_count_an_episode_with_a_return_rejected_by_pass_2_as_rejected() -> None:
    task = ("d", "t")
    returns = [((i,), str(i), float(i), "f") for i in range(3)]
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
