"""formats/tfds_shards.py: a shard's records as RawEpisodes in record order, keys from the id
fields (or the record's place), light and selective reads, and corrupt records as rejects."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from formats.tfds_shards import (
    RETURN_STEP_FIELDS,
    ShardReader,
    ShardReaders,
    corrupt_reject,
    make_key,
    open_with_fsspec,
    read_returns,
    read_shard,
)
from formats.tfrecord import CorruptRecord
from planning.plan import plan_work
from planning.work import Plan
from schemas.datasets import METAWORLD
from schemas.fields import IS_FIRST, IS_LAST, IS_TERMINAL, REWARD, STEPS
from tests import tfds_fixtures as fx
from tests.episode_fixtures import NUM_EPISODES, damaged_item, novel, plan, read_all  # noqa: F401 - fixtures
from transforms.episode import EpisodeKey, EpisodeReturn, RawEpisode, Reject, WorkItem
from transforms.rlds_rules import (
    CORRUPT_RECORD,
    DTYPE_MISMATCH,
    MISSING_RECORD,
    SHAPE_MISMATCH,
    UNEXPECTED_RECORD,
    episode_return,
)
from transforms.steps import num_emitted_steps

NUM = 4


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> tuple[WorkItem, list[dict]]:
    """One metaworld shard of 4 episodes (ids 10..13); episode 12 has no is_last step."""
    root = tmp_path_factory.mktemp("tfds")
    episodes = [fx.metaworld_episode(10 + i, 2 + i, is_last=i != 2) for i in range(NUM)]
    builder = fx.write_rlds_dataset(root, "gato_metaworld", "reach-v3", fx.metaworld_features(), episodes)
    [path] = fx.shard_files(builder)
    return WorkItem("metaworld", "gato_metaworld/reach-v3", str(builder), str(path), 3), episodes


def test_read_shard_yields_every_episode_in_record_order_with_its_key(shard) -> None:
    item, episodes = shard
    raws = list(read_shard(item, reader=ShardReader(item.builder_dir), spec=METAWORLD))
    assert all(isinstance(r, RawEpisode) for r in raws)
    assert [r.key for r in raws] == [
        EpisodeKey("metaworld", item.task, str(10 + i), (10 + i,), item.shard_path, i, 3) for i in range(NUM)
    ]
    for raw, episode in zip(raws, episodes):
        np.testing.assert_array_equal(raw.steps["observation"]["state"], episode["steps"]["observation"]["state"])
        assert raw.steps["action"].dtype == np.float32 and raw.steps["action"].shape == (len(raw.steps[REWARD]), 4)
        assert set(raw.episode_metadata) == {"episode_id", "episode_return"}  # `steps` popped off


def test_only_decodes_the_asked_records_in_record_order(shard) -> None:
    item, _ = shard
    reader = ShardReader(item.builder_dir)
    assert [i for i, _ in reader.episodes(item.shard_path, only=[3, 1])] == [1, 3]
    assert list(reader.episodes(item.shard_path, only=[])) == []
    assert [i for i, _ in reader.episodes(item.shard_path, only=[7])] == []  # past the end: nothing
    raws = list(read_shard(item, reader=reader, spec=METAWORLD, only={2}))
    assert [r.key.episode_id for r in raws] == ["12"] and raws[0].key.index_in_file == 2


def test_a_light_reader_decodes_flags_rewards_and_episode_fields_only(shard) -> None:
    item, _ = shard
    [raw, *_] = read_shard(item, reader=ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS), spec=METAWORLD)
    assert set(raw.steps) == {IS_FIRST, IS_LAST, IS_TERMINAL, REWARD}
    assert set(raw.episode_metadata) == {"episode_id", "episode_return"}


def test_read_returns_skips_episodes_that_break_an_rlds_rule(shard) -> None:
    item, episodes = shard
    light = ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS)
    returns = list(read_returns(item, reader=light, spec=METAWORLD))
    assert [r.key.episode_id for r in returns] == ["10", "11", "13"]  # 12 has no is_last
    assert all(isinstance(r, EpisodeReturn) for r in returns)
    # METAWORLD takes its return from `episode_return`; emitted steps exclude the final one.
    assert [r.value for r in returns] == [float(episodes[i]["episode_return"]) for i in (0, 1, 3)]
    assert [r.num_steps for r in returns] == [1, 2, 4]


def test_without_id_fields_the_record_place_is_the_id() -> None:
    item = WorkItem("d", "t", "/b", "/data/x.tfrecord-00000-of-00001", 0)
    no_ids = dataclasses.replace(METAWORLD, id_fields=(), order_key=())
    key = make_key(item, spec=no_ids, metadata={}, index=5)
    assert (key.episode_id, key.order_key, key.index_in_file) == ("x.tfrecord-00000-of-00001:5", (), 5)
    both = dataclasses.replace(METAWORLD, id_fields=("checkpoint_id", "episode_id"),
                               order_key=("checkpoint_id", "episode_id"))
    key = make_key(item, spec=both, metadata={"checkpoint_id": np.int64(2), "episode_id": np.array(b"e\xff")}, index=0)
    assert key.episode_id == "2/e\ufffd" and key.order_key == (2, "e\ufffd")


def test_a_truncated_shard_ends_with_a_corrupt_record_reject(shard, tmp_path: Path) -> None:
    item, _ = shard
    copy = tmp_path / Path(item.shard_path).name
    copy.write_bytes(Path(item.shard_path).read_bytes())
    offsets = fx.record_offsets(copy)
    fx.truncate_file(copy, offsets[2] + 5)
    broken = dataclasses.replace(item, shard_path=str(copy))
    out = list(read_shard(broken, reader=ShardReader(item.builder_dir), spec=METAWORLD))
    assert [type(o) for o in out] == [RawEpisode, RawEpisode, Reject]
    reject = out[-1]
    assert reject == Reject("metaworld", item.task, None, str(copy), CORRUPT_RECORD, None,
                            f"{copy}: record 2 cannot be read: truncated record at {offsets[2]}")
    with pytest.raises(ValueError, match="record 2 cannot be read: truncated record"):
        list(read_shard(broken, reader=ShardReader(item.builder_dir), spec=METAWORLD, strict=True))
    assert list(read_returns(broken, reader=ShardReader(item.builder_dir), spec=METAWORLD))[-1].key.episode_id == "11"


def test_corrupt_reject_names_file_and_record() -> None:
    item = WorkItem("d", "t", "/b", "/s", 0)
    assert corrupt_reject(item, index=4, error=CorruptRecord("x")) == Reject(
        "d", "t", None, "/s", CORRUPT_RECORD, None, "/s: record 4 cannot be read: x")


def test_files_are_opened_with_the_given_opener_and_readers_are_made_once(shard) -> None:
    item, _ = shard
    opened: list[str] = []

    def opener(path: str):
        opened.append(path)
        return open_with_fsspec(path)

    readers = ShardReaders(open_file=opener)
    assert readers(item.builder_dir) is readers(item.builder_dir)
    assert len(list(read_shard(item, reader=readers(item.builder_dir), spec=METAWORLD))) == NUM
    assert opened == [item.shard_path]
    light = ShardReaders(step_fields=RETURN_STEP_FIELDS)(item.builder_dir)
    [(_, episode), *_] = light.episodes(item.shard_path)
    assert set(episode["steps"]) == set(RETURN_STEP_FIELDS)


def test_opener_errors_propagate(shard) -> None:
    item, _ = shard

    @contextlib.contextmanager
    def failing(path: str):
        raise OSError(f"cannot open {path}")
        yield

    with pytest.raises(OSError, match="cannot open"):
        list(ShardReader(item.builder_dir, open_file=failing).episodes(item.shard_path))


# --- Whole RLDS datasets read back: exact contents of a novel layout, Atari's composite ids,
# corrupt and unparsable records, a write-then-read round trip, and the light read against
# the full one.



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
        assert raw.key.source_file in {w.source_file for w in plan.work_items}
        assert not raw.key.source_file.startswith("/")  # relative to the data dir
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


@pytest.mark.parametrize("damage, message", [("truncate", "truncated record at"), ("garble", "corrupted record at")])
def test_corrupt_record_rejected_after_earlier_episodes(
    plan: Plan, tmp_path: Path, damage: str, message: str
) -> None:
    item, before = damaged_item(plan, tmp_path, damage)
    out = read_all(plan, [item])
    after = item.expected_records - before - 1
    # A truncation loses the framing: the records after it are missing; a flipped data
    # byte loses only its record.
    rest = [Reject] * after if damage == "truncate" else [RawEpisode] * after
    assert [type(o) for o in out] == [RawEpisode] * before + [Reject] + rest
    reject = out[before]
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
    out = read_all(plan, [dataclasses.replace(item, shard_path=str(path), expected_records=3)])
    assert [type(o) for o in out] == [RawEpisode, Reject, RawEpisode]
    assert out[1].reason == CORRUPT_RECORD
    assert out[1].detail.startswith(f"{path}: record 1 cannot be read: ")
    assert [o.key.index_in_file for o in (out[0], out[2])] == [0, 2]


def test_corrupt_record_strict_raises(plan: Plan, tmp_path: Path) -> None:
    item, before = damaged_item(plan, tmp_path, "truncate")
    with pytest.raises(ValueError, match=f"{item.shard_path}: record {before} cannot be read"):
        read_all(plan, [item], strict=True)


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


LENGTHS = (3, 4, 4, 5, 6, 9, 7)  # episode i has LENGTHS[i] steps and rewards 0..n-1
NAN_EPISODE = 5  # its joints are NaN: only fields the light read never decodes


def _lengths_episode(i: int, n: int) -> dict[str, Any]:
    episode = fx.novel_episode(i, n)
    if i == NAN_EPISODE:
        episode["steps"]["observation"]["joints"][:] = np.nan
    return episode


@pytest.fixture(scope="module")
def lengths_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """7 novel-layout episodes of LENGTHS steps over 3 shards."""
    root = tmp_path_factory.mktemp("prompt_pass")
    episodes = [_lengths_episode(i, n) for i, n in enumerate(LENGTHS)]
    fx.write_rlds_dataset(root, "my_robot", "stacking", fx.novel_features(), episodes, num_shards=3)
    return plan_work(f"rlds:{root}", data_dir="")


def test_light_returns_equal_full_ones(lengths_plan: Plan) -> None:
    light: list[EpisodeReturn] = []
    full: list[RawEpisode] = []
    for item in lengths_plan.work_items:
        light += read_returns(item, reader=ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS), spec=lengths_plan.dataset)
        full += [r for r in read_shard(item, reader=ShardReader(item.builder_dir), spec=lengths_plan.dataset)]
    assert [r.key for r in light] == [r.key for r in full]
    assert [r.value for r in light] == [episode_return(r, lengths_plan.dataset) for r in full]
    assert [r.value for r in light] == [n * (n - 1) / 2 for n in LENGTHS]
    assert [r.num_steps for r in light] == [num_emitted_steps(r) for r in full] == [n - 1 for n in LENGTHS]


def test_light_reader_decodes_only_flags_rewards_and_episode_fields(lengths_plan: Plan) -> None:
    item = lengths_plan.work_items[0]
    (_, decoded), *_ = ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS).episodes(item.shard_path)
    assert sorted(decoded[STEPS]) == ["is_first", "is_last", "is_terminal", "reward"]
    assert sorted(k for k in decoded if k != STEPS) == ["episode_id"]


def test_only_decodes_the_asked_records(lengths_plan: Plan) -> None:
    item = lengths_plan.work_items[0]
    reader = ShardReader(item.builder_dir)
    everything = list(reader.episodes(item.shard_path))
    assert len(everything) >= 2
    picked = list(reader.episodes(item.shard_path, only=[1]))
    assert [i for i, _ in picked] == [1]
    assert picked[0][1]["episode_id"] == everything[1][1]["episode_id"]
    assert list(reader.episodes(item.shard_path, only=[])) == []


# --- Every record counted: faults inside a shard, and shards short of (or past) shardLengths.


def _copy(item: WorkItem, tmp_path: Path, *, expected: int | None = NUM) -> tuple[WorkItem, Path]:
    copy = tmp_path / Path(item.shard_path).name
    copy.write_bytes(Path(item.shard_path).read_bytes())
    return dataclasses.replace(item, shard_path=str(copy), expected_records=expected), copy


def _missing(item: WorkItem, index: int, found: str) -> Reject:
    return Reject("metaworld", item.task, None, item.shard_path, MISSING_RECORD, None,
                  f"{item.shard_path}: record {index} cannot be read: not in the file: dataset_info.json "
                  f"promises {NUM} records in this shard, {found}")


def _read(item: WorkItem, **kwargs: Any) -> list[Any]:
    return list(read_shard(item, reader=ShardReader(item.builder_dir), spec=METAWORLD, **kwargs))


def _light_ids(item: WorkItem, spec: Any = METAWORLD) -> list[str]:
    light = ShardReader(item.builder_dir, step_fields=RETURN_STEP_FIELDS)
    return [r.key.episode_id for r in read_returns(item, reader=light, spec=spec)]


def test_a_data_checksum_mismatch_rejects_its_record_and_reading_goes_on(shard, tmp_path: Path) -> None:
    item, copy = _copy(shard[0], tmp_path)
    offset = fx.record_offsets(copy)[1]
    fx.garble_file(copy, offset + 12 + 40, 4)
    out = _read(item)
    assert [o.key.episode_id if isinstance(o, RawEpisode) else o.reason for o in out] == [
        "10", CORRUPT_RECORD, "12", "13"]
    assert out[1] == Reject("metaworld", item.task, None, str(copy), CORRUPT_RECORD, None,
                            f"{copy}: record 1 cannot be read: corrupted record at {offset} (data checksum mismatch)")
    assert _light_ids(item) == ["10", "13"]  # 12 has no is_last


def test_a_shard_cut_at_a_record_boundary_is_short_of_its_shard_lengths(shard, tmp_path: Path) -> None:
    item, copy = _copy(shard[0], tmp_path)
    fx.truncate_file(copy, fx.record_offsets(copy)[2])  # a failed copy: whole records only
    out = _read(item)
    assert [type(o) for o in out] == [RawEpisode, RawEpisode, Reject, Reject]
    assert out[2:] == [_missing(item, 2, "it holds 2 records"), _missing(item, 3, "it holds 2 records")]
    with pytest.raises(ValueError, match="record 2 cannot be read: not in the file"):
        _read(item, strict=True)
    unknown = dataclasses.replace(item, expected_records=None)  # no shardLengths: nothing to compare
    assert [type(o) for o in _read(unknown)] == [RawEpisode, RawEpisode]


def test_after_lost_framing_the_promised_records_are_missing(shard, tmp_path: Path) -> None:
    item, copy = _copy(shard[0], tmp_path)
    offset = fx.record_offsets(copy)[1]
    fx.garble_file(copy, offset + 9, 1)  # the length's checksum
    out = _read(item)
    assert [o.reason for o in out[1:]] == [CORRUPT_RECORD, MISSING_RECORD, MISSING_RECORD]
    assert out[1].detail == f"{copy}: record 1 cannot be read: corrupted record at {offset} (length checksum mismatch)"
    assert out[2:] == [_missing(item, i, "its framing was lost at record 1") for i in (2, 3)]
    assert _light_ids(item) == ["10"]


def test_a_crafted_huge_length_is_a_reject_naming_file_and_offset(shard, tmp_path: Path) -> None:
    item, copy = _copy(shard[0], tmp_path)
    offset = fx.record_offsets(copy)[2]
    fx.frame_with_length(copy, 2, 1 << 40)
    out = _read(item)
    assert [type(o) for o in out] == [RawEpisode, RawEpisode, Reject, Reject]
    left = copy.stat().st_size - offset - 16
    assert out[2].detail == (f"{copy}: record 2 cannot be read: truncated record at {offset} (its length "
                             f"1099511627776 is more than the {left} bytes left in the file)")
    assert out[3] == _missing(item, 3, "its framing was lost at record 2")


def test_records_past_the_shard_lengths_are_rejected_by_episode(shard, tmp_path: Path) -> None:
    item, copy = _copy(shard[0], tmp_path, expected=NUM - 1)
    out = _read(item)
    assert [type(o) for o in out] == [RawEpisode] * (NUM - 1) + [Reject]
    assert out[-1] == Reject("metaworld", item.task, "13", str(copy), UNEXPECTED_RECORD, None,
                             f"{copy}: record 3 (episode '13') is past the 3 records dataset_info.json "
                             "promises in this shard")
    assert _light_ids(item) == ["10", "11"]


def test_a_lying_dtype_is_a_reject_naming_episode_field_and_both_dtypes(shard, tmp_path: Path) -> None:
    item = shard[0]
    builder = tmp_path / "builder"
    shutil.copytree(item.builder_dir, builder)
    fx.declare_dtype(builder, "action", "int32")  # the records hold float32
    lying = dataclasses.replace(item, builder_dir=str(builder), shard_path=str(builder / Path(item.shard_path).name))
    out = _read(lying)
    assert [(o.episode_id, o.reason, o.field) for o in out] == [(str(10 + i), DTYPE_MISMATCH, "action") for i in range(NUM)]
    assert out[0].detail == (f"{lying.shard_path}: record 0 (episode '10') cannot be read: feature 'steps/action' "
                             "is declared int32 but the record holds float32 values (float_list)")
    assert _light_ids(lying) == []  # pass 1 never converts actions, yet gives no return either


def test_a_step_field_changing_shape_is_rejected_by_episode_in_both_passes(plan: Plan, tmp_path: Path) -> None:
    item = plan.work_items[0]
    copy = tmp_path / Path(item.shard_path).name
    shutil.copy(item.shard_path, copy)

    def cut_one_value(example: Any) -> None:
        values = example.features.feature["steps/observation/joints"].float_list.value
        del values[len(values) - 1 :]  # not T x 5 any more

    fx.rewrite_example(copy, 1, cut_one_value)
    item = dataclasses.replace(item, shard_path=str(copy))
    out = read_all(plan, [item])
    reject = out[1]
    assert isinstance(reject, Reject) and (reject.episode_id, reject.reason, reject.field) == (
        "1", SHAPE_MISMATCH, "observation/joints")
    assert reject.detail.startswith(f"{copy}: record 1 (episode '1') cannot be read: feature 'steps/observation/joints': ")
    full_ids = [o.key.episode_id for o in out if isinstance(o, RawEpisode)]
    assert "1" not in full_ids and _light_ids(item, plan.dataset) == full_ids
