"""transforms/episode.py: episode identity and a total, deterministic collection order; rejects
named by episode or by record; every element pickles (they cross Beam workers)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from transforms.episode import (
    EpisodeKey,
    EpisodeReturn,
    FilterDecision,
    KeptEpisode,
    RawEpisode,
    Reject,
    WorkItem,
)

KEY = EpisodeKey("atari", "rlu_atari/Pong_run_1", "3/7", (3, 7), "/d/shard-00000", 12, work_item=4)


def test_sort_key_orders_by_order_key_then_file_then_record() -> None:
    a = EpisodeKey("d", "t", "x", (1,), "b-file", 0)
    b = EpisodeKey("d", "t", "y", (1,), "a-file", 5)
    c = EpisodeKey("d", "t", "z", (1,), "a-file", 2)
    d = EpisodeKey("d", "t", "w", (0,), "z-file", 9)
    assert [k.episode_id for k in sorted([a, b, c, d], key=EpisodeKey.sort_key)] == ["w", "z", "y", "x"]
    assert KEY.sort_key() == ((3, 7), "/d/shard-00000", 12)


def test_task_keys_and_location() -> None:
    assert KEY.task_key == ("atari", "rlu_atari/Pong_run_1")
    assert EpisodeKey("d", "t", "e", (), "f", 0).work_item == 0
    assert KEY.location() == "file '/d/shard-00000' (record 12), task 'rlu_atari/Pong_run_1'"


def test_rejects_of_an_episode_and_of_a_record() -> None:
    assert Reject.of_episode(KEY, reason="non_finite", field="observation", detail="NaN") == Reject(
        "atari", "rlu_atari/Pong_run_1", "3/7", "/d/shard-00000", "non_finite", "observation", "NaN")
    item = WorkItem("atari", "rlu_atari/Pong_run_1", "/d", "/d/shard-00001", 2)
    reject = Reject.of_record(item, reason="corrupt_record", detail="truncated")
    assert reject == Reject("atari", "rlu_atari/Pong_run_1", None, "/d/shard-00001", "corrupt_record", None, "truncated")
    assert reject.task_key == ("atari", "rlu_atari/Pong_run_1")
    named = Reject.of_record(item, reason="dtype_mismatch", detail="record 3", field="action")
    assert (named.episode_id, named.field) == (None, "action")


def test_a_work_item_carries_the_records_its_shard_promises() -> None:
    assert WorkItem("d", "t", "/b", "/b/s", 0).expected_records is None
    assert WorkItem("d", "t", "/b", "/b/s", 0, expected_records=5).expected_records == 5


def test_a_work_item_names_its_shard_relative_to_the_data_dir_it_lies_under() -> None:
    assert WorkItem("d", "t", "/b", "/b/s", 0).source_file == "/b/s"
    assert WorkItem("d", "t", "gs://x/data/t/1", "gs://x/data/t/1/s", 0, data_root="gs://x/data/").source_file == "t/1/s"
    assert WorkItem("d", "t", "/b", "/elsewhere/s", 0, data_root="/b").source_file == "/elsewhere/s"
    assert WorkItem("d", "t", "/b", "/bb/s", 0, data_root="/b").source_file == "/bb/s"  # a prefix, not a parent
    item = WorkItem("d", "t", "/data/t", "/data/t/s", 0, data_root="/data")
    assert Reject.of_record(item, reason="corrupt_record", detail="x").source_file == "t/s"


def test_keys_are_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        KEY.episode_id = "other"  # type: ignore[misc]
    assert {KEY: 1}[EpisodeKey("atari", "rlu_atari/Pong_run_1", "3/7", (3, 7), "/d/shard-00000", 12, 4)] == 1


def test_every_element_pickles_to_an_equal_one() -> None:
    elements = [
        WorkItem("d", "t", "/b", "/b/s", 0),
        WorkItem("d", "t", "/b", "/b/s", 0, 7),
        KEY,
        EpisodeReturn(KEY, -2.5, 10),
        Reject.of_episode(KEY, reason="r", field=None, detail="x"),
        FilterDecision(KEY, 1.0, True, "at_or_above_threshold"),
        KeptEpisode(KEY, 1.0, timesteps=10, tokens=400),
    ]
    for element in elements:
        assert pickle.loads(pickle.dumps(element)) == element
    raw = RawEpisode(KEY, {"action": np.arange(3)}, {"episode_return": np.float32(1.5)})
    clone = pickle.loads(pickle.dumps(raw))
    assert clone.key == KEY and clone.steps["action"].tolist() == [0, 1, 2]
    assert clone.episode_metadata == {"episode_return": np.float32(1.5)}
