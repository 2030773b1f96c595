"""ReadEpisodes on real TFDS shards: exact contents, corrupt records, strict mode, counters."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from transforms.episode import RawEpisode, Reject
from planning.plan import plan_work
from planning.work import Plan
from transforms.episode import WorkItem
from formats.tfds_shards import ShardReader, read_shard
from pipeline.read_episodes import COUNTER_NAMESPACE, ReadEpisodes
from pipeline.rejects import REJECTS_TAG as REJECTS
from pipeline.validate_episodes import ValidateEpisodes
from transforms.rlds_rules import CORRUPT_RECORD, RLDS_IS_LAST, check_rlds, episode_return
from transforms.steps import emitted_steps
from schemas.datasets import REGISTRY
from schemas.vocab import Modality
from tests import tfds_fixtures as fx
from tests.transforms.text_fixtures import train_tiny_model
from transforms.text import SentencePieceTokenizer
from transforms.tokenize import tokenize_episode

RUNNER = "BundleBasedDirectRunner"
NUM_EPISODES = 5


@pytest.fixture(scope="module")
def novel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A dataset no registry entry knows, 5 episodes over 2 shards."""
    root = tmp_path_factory.mktemp("novel")
    episodes = [fx.novel_episode(i, 3 + i) for i in range(NUM_EPISODES)]
    fx.write_rlds_dataset(root, "my_robot", "stacking", fx.novel_features(), episodes, num_shards=2)
    return root, episodes


@pytest.fixture(scope="module")
def plan(novel: tuple[Path, list[dict[str, Any]]]) -> Plan:
    return plan_work(f"rlds:{novel[0]}", data_dir="")


def read_all(plan: Plan, items: list[WorkItem] | None = None, **kwargs: Any) -> list[Any]:
    out: list[Any] = []
    readers: dict[str, ShardReader] = {}  # one per builder dir, as ReadEpisodesFn keeps them
    for item in items or plan.work_items:
        if item.builder_dir not in readers:
            readers[item.builder_dir] = ShardReader(item.builder_dir)
        reader = readers[item.builder_dir]
        out.extend(read_shard(item, reader=reader, spec=plan.dataset, **kwargs))
    return out


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_read_rlds_dir_gives_exact_episodes(
    novel: tuple[Path, list[dict[str, Any]]], plan: Plan
) -> None:
    _, written = novel
    episodes = read_all(plan)
    assert all(isinstance(e, RawEpisode) for e in episodes)
    assert sorted(e.key.episode_id for e in episodes) == [str(i) for i in range(NUM_EPISODES)]
    for raw in episodes:
        source = written[int(raw.key.episode_id)]
        steps, expected = raw.steps, source["steps"]
        n = len(expected["reward"])
        assert raw.key.order_key == (int(raw.key.episode_id),)
        assert raw.key.source_file in {w.shard_path for w in plan.work_items}
        assert raw.episode_metadata == {"episode_id": int(raw.key.episode_id)}
        # Images stay PNG bytes, one per step, and decode to the written pixels.
        rgb = steps["observation"]["camera"]["rgb"]
        assert rgb.dtype == object and rgb.shape == (n,)
        for t in range(n):
            np.testing.assert_array_equal(png_pixels(rgb[t]), expected["observation"]["camera"]["rgb"][t])
        instruction = steps["observation"]["instruction"]
        assert instruction.dtype == object and list(instruction) == [f"stack block {raw.key.episode_id}".encode()] * n
        np.testing.assert_array_equal(steps["observation"]["joints"], expected["observation"]["joints"])
        assert steps["observation"]["joints"].dtype == np.float32
        np.testing.assert_array_equal(steps["action"]["arm"], expected["action"]["arm"])
        np.testing.assert_array_equal(steps["action"]["gripper"], expected["action"]["gripper"])
        assert steps["action"]["gripper"].dtype == np.int64
        np.testing.assert_array_equal(steps["is_last"], expected["is_last"])
        assert steps["is_first"].dtype == bool


def test_index_in_file_is_the_record_index(plan: Plan) -> None:
    for item in plan.work_items:
        episodes = list(read_shard(item, reader=ShardReader(item.builder_dir), spec=plan.dataset))
        assert [e.key.index_in_file for e in episodes] == list(range(len(episodes)))
        assert {e.key.work_item for e in episodes} == {item.index}


def test_atari_ids_join_checkpoint_and_episode(tmp_path: Path) -> None:
    import tensorflow_datasets as tfds

    features = fx.episode_features(
        {"observation": tfds.features.Image(shape=(84, 84, 1)), "action": np.int64},
        checkpoint_id=np.int64,
        episode_id=np.int64,
        episode_return=np.float32,
    )
    episode = {
        "checkpoint_id": 3,
        "episode_id": 12,
        "episode_return": 1.5,
        "steps": {
            "observation": np.zeros((2, 84, 84, 1), np.uint8),
            "action": np.array([1, 2]),
            "reward": np.zeros(2, np.float32),
            **fx.flags(2),
        },
    }
    fx.write_rlds_dataset(tmp_path, "rlu_atari", "Pong_run_1", features, [episode], version="1.3.0")
    atari = plan_work("atari", data_dir=str(tmp_path), tasks=["Pong_run_1"])
    [raw] = read_all(atari)
    assert raw.key.episode_id == "3/12"
    assert raw.key.order_key == (3, 12)
    assert raw.key.dataset == "atari" and raw.key.task == "rlu_atari/Pong_run_1"
    assert raw.episode_metadata["episode_return"] == np.float32(1.5)


def damaged_item(plan: Plan, tmp_path: Path, damage: str) -> tuple[WorkItem, int]:
    """A copy of the first shard, damaged at its second record; (item, records before)."""
    item = plan.work_items[0]
    copy = tmp_path / Path(item.shard_path).name
    shutil.copy(item.shard_path, copy)
    offsets = fx.record_offsets(copy)
    if damage == "truncate":
        fx.truncate_file(copy, offsets[1] + 20)
    else:
        fx.garble_file(copy, offsets[1] + 30)
    return dataclasses.replace(item, shard_path=str(copy)), 1


@pytest.mark.parametrize("damage, message", [("truncate", "truncated record at"), ("garble", "corrupted record at")])
def test_corrupt_record_rejected_after_earlier_episodes(
    plan: Plan, tmp_path: Path, damage: str, message: str
) -> None:
    item, before = damaged_item(plan, tmp_path, damage)
    out = read_all(plan, [item])
    assert [type(o) for o in out] == [RawEpisode] * before + [Reject]
    reject = out[-1]
    assert reject.reason == CORRUPT_RECORD and reject.episode_id is None
    assert reject.source_file == item.shard_path and reject.task == "my_robot/stacking"
    assert reject.detail.startswith(f"{item.shard_path}: record {before} cannot be read: ")
    assert message in reject.detail and "function_node" not in reject.detail


def test_unparsable_record_is_rejected_and_reading_goes_on(plan: Plan, tmp_path: Path) -> None:
    """A record with valid framing but bytes that are no tf.train.Example: only it is lost."""
    import tensorflow as tf

    item = plan.work_items[0]
    records = [r.numpy() for r in tf.data.TFRecordDataset(item.shard_path)]
    path = tmp_path / "mixed.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(records[0])
        writer.write(b"\xff not an example \x00")
        writer.write(records[1])
    out = read_all(plan, [dataclasses.replace(item, shard_path=str(path))])
    assert [type(o) for o in out] == [RawEpisode, Reject, RawEpisode]
    assert out[1].reason == CORRUPT_RECORD
    assert out[1].detail.startswith(f"{path}: record 1 cannot be read: ")
    assert [o.key.index_in_file for o in (out[0], out[2])] == [0, 2]


def test_corrupt_record_strict_raises(plan: Plan, tmp_path: Path) -> None:
    item, before = damaged_item(plan, tmp_path, "truncate")
    with pytest.raises(ValueError, match=f"{item.shard_path}: record {before} cannot be read"):
        read_all(plan, [item], strict=True)


def test_read_episodes_in_beam_with_rejects_and_counters(plan: Plan, tmp_path: Path) -> None:
    damaged, before = damaged_item(plan, tmp_path, "garble")
    items = [damaged, plan.work_items[1]]
    intact = sum(1 for _ in read_all(plan, [plan.work_items[1]]))
    p = TestPipeline(runner=RUNNER)
    out = p | beam.Create(items) | ReadEpisodes(plan.dataset)
    assert_that(
        out.episodes | "Files" >> beam.Map(lambda e: (e.key.source_file, e.key.index_in_file)),
        equal_to([(damaged.shard_path, i) for i in range(before)]
                 + [(items[1].shard_path, i) for i in range(intact)]),
        label="Episodes",
    )
    assert_that(
        out[REJECTS] | "Reasons" >> beam.Map(lambda r: (r.source_file, r.reason)),
        equal_to([(damaged.shard_path, CORRUPT_RECORD)]),
        label="Rejects",
    )
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))["counters"]
    }
    episodes_read = before + intact
    assert counters[f"{damaged.dataset}/my_robot/stacking/episodes"] == episodes_read
    assert counters[f"{damaged.dataset}/my_robot/stacking/corrupt_records"] == 1
    assert counters[f"{damaged.dataset}/my_robot/stacking/steps"] > 3 * episodes_read


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


@st.composite
def _episodes(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-4 episodes of 1-6 steps; floats include NaN/inf and extremes (read must not judge)."""
    floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
    episodes = []
    for episode_id in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 6))
        state = np.array(draw(st.lists(floats, min_size=n * 39, max_size=n * 39)), np.float32)
        episodes.append(
            {
                "episode_id": draw(st.integers(-(2**63), 2**63 - 1)),
                "episode_return": np.float32(draw(floats)),
                "steps": {
                    "observation": {"state": state.reshape(n, 39)},
                    "action": np.array(draw(st.lists(floats, min_size=n * 4, max_size=n * 4)), np.float32).reshape(n, 4),
                    "reward": np.array(draw(st.lists(floats, min_size=n, max_size=n)), np.float32),
                    **fx.flags(n, is_last=draw(st.booleans())),
                },
            }
        )
    return episodes


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(episodes=_episodes(), num_shards=st.integers(1, 3))
def test_write_then_read_round_trip(
    tmp_path_factory: pytest.TempPathFactory, episodes: list[dict[str, Any]], num_shards: int
) -> None:
    root = tmp_path_factory.mktemp("roundtrip")
    num_shards = min(num_shards, len(episodes))  # TFDS writes no empty shards
    fx.write_rlds_dataset(root, "gato_metaworld", "reach-v3", fx.metaworld_features(), episodes, num_shards=num_shards)
    plan = plan_work("metaworld", data_dir=str(root))
    read = read_all(plan)
    # Records come back in written order across the shards, bit for bit.
    assert [r.key.episode_id for r in read] == [str(e["episode_id"]) for e in episodes]
    for raw, written in zip(read, episodes):
        assert raw.key.order_key == (written["episode_id"],)
        np.testing.assert_array_equal(raw.episode_metadata["episode_return"], written["episode_return"])
        for path in ("observation/state", "action", "reward", "is_first", "is_last", "is_terminal", "discount"):
            got: Any = raw.steps
            want: Any = written["steps"]
            for part in path.split("/"):
                got, want = got[part], want[part]
            assert got.dtype == np.asarray(want).dtype, path
            np.testing.assert_array_equal(got.view(np.uint8), np.asarray(want).view(np.uint8), err_msg=path)
