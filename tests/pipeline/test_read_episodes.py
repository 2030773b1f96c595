"""pipeline/read_episodes.py: ReadEpisodes on real TFDS shards (exact records, corrupt ones
rejected and counted, reading on after them), ReadReturns' light read, and what the read
gives on to validation and tokenization, for a novel layout and every bundled dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from formats.tfds_shards import (
    RETURN_STEP_FIELDS,
    ShardReader,
    read_returns,
)
from pipeline.counters import counter_name
from pipeline.read_episodes import COUNTER_NAMESPACE, REJECT_COUNTERS, ReadEpisodes, ReadReturns
from pipeline.rejects import REJECTS_TAG as REJECTS
from pipeline.validate_episodes import ValidateEpisodes
from planning.plan import plan_work
from planning.work import Plan
from schemas.datasets import REGISTRY
from schemas.vocab import Modality
from tests import tfds_fixtures as fx
from tests.episode_fixtures import NUM_EPISODES, damaged_item, novel, plan, read_all  # noqa: F401 - fixtures
from tests.pipeline.pipeline_fixtures import RUNNER, committed_counters
from tests.transforms.text_fixtures import train_tiny_model
from transforms.episode import RawEpisode, Reject
from transforms.rlds_rules import (
    CORRUPT_RECORD,
    MISSING_RECORD,
    REASONS,
    RLDS_IS_LAST,
    check_rlds,
    episode_return,
)
from transforms.steps import emitted_steps
from transforms.text import SentencePieceTokenizer
from transforms.tokenize import tokenize_episode


def test_read_episodes_in_beam_with_rejects_and_counters(plan: Plan, tmp_path: Path) -> None:
    damaged, before = damaged_item(plan, tmp_path, "garble")
    items = [damaged, plan.work_items[1]]
    intact = sum(1 for _ in read_all(plan, [plan.work_items[1]]))
    p = TestPipeline(runner=RUNNER)
    out = p | beam.Create(items) | ReadEpisodes(plan.dataset)
    assert_that(
        out.episodes | "Files" >> beam.Map(lambda e: (e.key.source_file, e.key.index_in_file)),
        equal_to([(damaged.source_file, i) for i in range(before)]
                 + [(items[1].source_file, i) for i in range(intact)]),
        label="Episodes",
    )
    assert_that(
        out[REJECTS] | "Reasons" >> beam.Map(lambda r: (r.source_file, r.reason)),
        equal_to([(damaged.source_file, CORRUPT_RECORD)]),
        label="Rejects",
    )
    result = p.run()
    result.wait_until_finish()
    counters = committed_counters(result, COUNTER_NAMESPACE)
    episodes_read = before + intact
    assert counters[f"{damaged.dataset}/my_robot/stacking/episodes"] == episodes_read
    assert counters[f"{damaged.dataset}/my_robot/stacking/corrupt_records"] == 1
    assert counters[f"{damaged.dataset}/my_robot/stacking/steps"] > 3 * episodes_read


def test_a_shard_short_of_its_shard_lengths_gives_a_counted_reject_per_missing_record(
    plan: Plan, tmp_path: Path
) -> None:
    item = plan.work_items[1]
    copy = tmp_path / Path(item.shard_path).name
    copy.write_bytes(Path(item.shard_path).read_bytes())
    fx.truncate_file(copy, fx.record_offsets(copy)[1])  # cut at a record boundary: 1 record left
    short = dataclasses.replace(item, shard_path=str(copy))
    missing = short.expected_records - 1
    assert missing > 0
    p = TestPipeline(runner=RUNNER)
    out = p | beam.Create([short]) | ReadEpisodes(plan.dataset)
    assert_that(out.episodes | "Ids" >> beam.Map(lambda e: e.key.index_in_file), equal_to([0]), label="Episodes")
    assert_that(
        out[REJECTS] | "Reasons" >> beam.Map(lambda r: (r.reason, r.detail.split(" cannot be read")[0])),
        equal_to([(MISSING_RECORD, f"{copy}: record {i}") for i in range(1, short.expected_records)]),
        label="Rejects",
    )
    result = p.run()
    result.wait_until_finish()
    counters = committed_counters(result, COUNTER_NAMESPACE)
    assert counters[f"{short.dataset}/my_robot/stacking/missing_records"] == missing
    assert set(REJECT_COUNTERS) <= REASONS


def test_episode_without_is_last_is_read_then_rejected(tmp_path: Path) -> None:
    episodes = [fx.metaworld_episode(0, 3), fx.metaworld_episode(1, 3, is_last=False)]
    fx.write_rlds_dataset(tmp_path, "gato_metaworld", "reach-v3", fx.metaworld_features(), episodes)
    metaworld = plan_work("metaworld", data_dir=str(tmp_path))
    with TestPipeline(runner=RUNNER) as p:
        read = p | beam.Create(metaworld.work_items) | ReadEpisodes(metaworld.dataset)
        valid = read.episodes | ValidateEpisodes()
        assert_that(valid.valid | beam.Map(lambda e: e.key.episode_id), equal_to(["0"]), label="Valid")
        assert_that(
            valid[REJECTS] | "Reasons" >> beam.Map(lambda r: (r.episode_id, r.reason, r.field)),
            equal_to([("1", RLDS_IS_LAST, "is_last")]),
            label="Rejects",
        )


@pytest.fixture(scope="module")
def tiny_text_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_path(str(train_tiny_model(tmp_path_factory.mktemp("spm"))))


def test_read_episodes_tokenize_with_the_planned_specs(
    plan: Plan, tiny_text_tokenizer: SentencePieceTokenizer
) -> None:
    """The reader's output is what tokenization takes: emitted steps + the plan's specs."""
    tokenizer = tiny_text_tokenizer
    for raw in read_all(plan):
        check_rlds(raw)
        tokens = tokenize_episode(
            emitted_steps(raw), plan.fields_for(raw.key.task), text=tokenizer, episode=raw.key.episode_id
        )
        timesteps = len(raw.steps["is_first"]) - 1
        assert tokens.num_timesteps == timesteps
        # 20x24 pixels pad to 32x32: 4 patches per timestep.
        assert int(np.sum(tokens.modality == Modality.IMAGE)) == 4 * timesteps
        # joints (5) + arm (3) continuous, gripper (1) discrete, per timestep.
        assert int(np.sum(tokens.modality == Modality.CONTINUOUS)) == 8 * timesteps
        assert int(np.sum(tokens.modality == Modality.SEPARATOR)) == timesteps


SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "data"
BUNDLED = sorted(
    name for name, spec in REGISTRY.items() if any((SAMPLES / t).is_dir() for t in spec.tfds_names)
)


@pytest.mark.skipif(not BUNDLED, reason="samples/data/ holds no recorded dataset yet")
@pytest.mark.parametrize("dataset", BUNDLED)
def test_every_bundled_dataset_plans_reads_and_tokenizes(
    dataset: str, tiny_text_tokenizer: SentencePieceTokenizer
) -> None:
    plan = plan_work(dataset, data_dir=str(SAMPLES))
    assert plan.work_items
    episodes = read_all(plan)
    assert episodes and all(isinstance(e, RawEpisode) for e in episodes), [
        e for e in episodes if isinstance(e, Reject)
    ]
    tasks_read = set()
    for raw in episodes:
        check_rlds(raw)
        assert np.isfinite(episode_return(raw, plan.dataset))
        tasks_read.add(raw.key.task)
        for field in plan.fields_for(raw.key.task):
            leaf: Any = raw.steps
            for part in field.split("/"):
                leaf = leaf[part]
            assert len(leaf) == len(raw.steps["is_first"]), field
        tokens = tokenize_episode(
            emitted_steps(raw),
            plan.fields_for(raw.key.task),
            text=tiny_text_tokenizer,
            local_position_table=plan.dataset.local_position_table,
            episode=raw.key.episode_id,
        )
        assert tokens.num_timesteps == len(raw.steps["is_first"]) - 1
    assert tasks_read == set(plan.tasks)


def test_read_episodes_strict_raises_on_a_corrupt_record(plan: Plan, tmp_path: Path) -> None:
    damaged, before = damaged_item(plan, tmp_path, "truncate")
    with pytest.raises(Exception, match=f"record {before} cannot be read"):
        with TestPipeline(runner=RUNNER) as p:
            _ = p | beam.Create([damaged]) | ReadEpisodes(plan.dataset, strict=True)


def test_read_returns_gives_the_light_returns_counted_under_its_namespace(plan: Plan) -> None:
    expected = [
        (r.key.episode_id, r.value, r.num_steps)
        for item in plan.work_items
        for r in read_returns(item, reader=ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS),
                              spec=plan.dataset)
    ]
    assert len(expected) == NUM_EPISODES
    p = TestPipeline(runner=RUNNER)
    returns = p | beam.Create(plan.work_items) | ReadReturns(plan.dataset, namespace="gato.test_returns")
    assert_that(returns | beam.Map(lambda r: (r.key.episode_id, r.value, r.num_steps)), equal_to(expected))
    result = p.run()
    result.wait_until_finish()
    task = (plan.dataset.name, "my_robot/stacking")
    assert committed_counters(result, "gato.test_returns") == {counter_name(task, "returns"): NUM_EPISODES}
    assert committed_counters(result, COUNTER_NAMESPACE) == {}  # pass 1 never counts as the read
