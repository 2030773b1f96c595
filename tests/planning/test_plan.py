"""planning/plan.py: plan_work on registry datasets and real TFDS data; every start-up error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from planning.plan import plan_work
from planning.rlds_dirs import plan_rlds_dir
from transforms.episode import WorkItem
from formats.tfds_shards import ShardReader, read_shard
from schemas.fields import continuous, text
from schemas.rlds_spec import RETURN_EPISODE_RETURN, RETURN_SUM_REWARDS
from tests import tfds_fixtures as fx


PUSH_RECORDS, REACH_RECORDS = 1, (1, 1, 1)  # records per shard, as dataset_info.json's shardLengths say


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metaworld (two tasks, one with 3 shards), babyai (one task)."""
    root = tmp_path_factory.mktemp("data")
    episodes = [fx.metaworld_episode(i, 3 + i) for i in range(3)]
    fx.write_rlds_dataset(root, "gato_metaworld", "reach-v3", fx.metaworld_features(), episodes, num_shards=3)
    fx.write_rlds_dataset(root, "gato_metaworld", "push-v3", fx.metaworld_features(), episodes[:1])
    fx.write_rlds_dataset(root, "gato_babyai", "GoToRedBall", fx.babyai_features(), [fx.babyai_episode(0, 3)])
    return root


def test_metaworld_plan_has_one_item_per_shard_in_order(data_dir: Path) -> None:
    plan = plan_work("metaworld", data_dir=str(data_dir))
    assert plan.tasks == ["gato_metaworld/push-v3", "gato_metaworld/reach-v3"]
    builder = data_dir / "gato_metaworld" / "reach-v3" / "1.0.0"
    push = data_dir / "gato_metaworld" / "push-v3" / "1.0.0"
    assert plan.work_items == (
        WorkItem("metaworld", "gato_metaworld/push-v3", str(push),
                 str(push / "gato_metaworld-train.tfrecord-00000-of-00001"), 0, expected_records=PUSH_RECORDS,
                 data_root=str(data_dir)),
        *(
            WorkItem("metaworld", "gato_metaworld/reach-v3", str(builder),
                     str(builder / f"gato_metaworld-train.tfrecord-0000{i}-of-00003"), i + 1,
                     expected_records=REACH_RECORDS[i], data_root=str(data_dir))
            for i in range(3)
        ),
    )
    # Outputs name shards relative to the data dir, wherever it lives.
    assert plan.work_items[0].source_file == "gato_metaworld/push-v3/1.0.0/gato_metaworld-train.tfrecord-00000-of-00001"
    assert plan.fields_for("gato_metaworld/reach-v3") == {
        "action": continuous("linear"),
        "observation/state": continuous("mu_law"),
    }
    assert plan.dataset.name == "metaworld"


def test_several_globs_on_config_or_task_names(data_dir: Path) -> None:
    plan = plan_work("metaworld", data_dir=str(data_dir), tasks=["reach-*", "gato_metaworld/push-v3"])
    assert plan.tasks == ["gato_metaworld/push-v3", "gato_metaworld/reach-v3"]
    plan = plan_work("metaworld", data_dir=str(data_dir), tasks=["re*"])
    assert plan.tasks == ["gato_metaworld/reach-v3"]
    assert [w.index for w in plan.work_items] == [0, 1, 2]
    babyai = plan_work("babyai", data_dir=str(data_dir))
    assert babyai.fields_for("gato_babyai/GoToRedBall")["observation/mission"] == text()


def test_missing_data_dir_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=f"does not exist: looked in {missing}"):
        plan_work("metaworld", data_dir=str(missing))
    with pytest.raises(ValueError, match=f"rlds: directory does not exist: looked in {missing}"):
        plan_work(f"rlds:{missing}", data_dir="")


def test_unknown_dataset_lists_known_names(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'meta'.*'metaworld'"):
        plan_work("meta", data_dir=str(data_dir))


def test_glob_matching_nothing_lists_tasks_on_disk(data_dir: Path) -> None:
    with pytest.raises(ValueError) as e:
        plan_work("metaworld", data_dir=str(data_dir), tasks=["reach-v3", "pick-*"])
    message = str(e.value)
    assert "task glob 'pick-*' matches no task of 'metaworld'" in message
    assert "[gato_metaworld/push-v3, gato_metaworld/reach-v3] (2 in all)" in message


def test_known_task_not_on_disk_is_reported_with_the_known_list(data_dir: Path) -> None:
    with pytest.raises(ValueError) as e:
        plan_work("atari", data_dir=str(data_dir), tasks=["Pong_run_1"])
    message = str(e.value)
    assert "task glob 'Pong_run_1' matches no task of 'atari'" in message
    assert "(1 known tasks match it, none on disk)" in message
    assert "Tasks on disk: none" in message
    # The known list is cut at 20 names and says how many there are.
    assert "rlu_atari/Alien_run_1" in message and "(230 in all)" in message


def test_feature_mismatch_names_field_expected_and_found(tmp_path: Path) -> None:
    features = fx.episode_features(
        {
            "observation": {"state": tfds.features.Tensor(shape=(38,), dtype=np.float32)},
            "action": tfds.features.Tensor(shape=(4,), dtype=np.float64),
            "extra": np.int64,
        }
    )
    episode = fx.metaworld_episode(0, 3)
    episode["steps"]["observation"]["state"] = episode["steps"]["observation"]["state"][:, :38]
    episode["steps"]["action"] = episode["steps"]["action"].astype(np.float64)
    episode["steps"]["extra"] = np.zeros(3, np.int64)
    fx.write_rlds_dataset(tmp_path, "gato_metaworld", "reach-v3", features, [episode])
    with pytest.raises(ValueError) as e:
        plan_work("metaworld", data_dir=str(tmp_path))
    message = str(e.value)
    assert "task 'gato_metaworld/reach-v3'" in message
    assert (
        "field 'steps/observation/state': expected tensor(float32, shape (39,)), "
        "found tensor(float32, shape (38,))" in message
    )
    assert (
        "field 'steps/action': expected tensor(float32, shape (4,)), "
        "found tensor(float64, shape (4,))" in message
    )


def test_unexpected_observation_field_is_a_mismatch(tmp_path: Path) -> None:
    features = fx.episode_features(
        {
            "observation": {
                "state": tfds.features.Tensor(shape=(39,), dtype=np.float32),
                "goal": tfds.features.Tensor(shape=(3,), dtype=np.float32),
            },
            "action": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        }
    )
    episode = fx.metaworld_episode(0, 2)
    episode["steps"]["observation"]["goal"] = np.zeros((2, 3), np.float32)
    fx.write_rlds_dataset(tmp_path, "gato_metaworld", "reach-v3", features, [episode])
    with pytest.raises(ValueError, match="'steps/observation/goal'.*not in the registry entry"):
        plan_work("metaworld", data_dir=str(tmp_path))


def test_control_suite_infers_observations_per_task(tmp_path: Path) -> None:
    for task, keys in (("cartpole_swingup", {"position": 3, "velocity": 2}), ("walker_walk", {"height": 1})):
        features = fx.episode_features(
            {
                # As rlu_control_suite stores them: zlib-compressed float vectors.
                "observation": {
                    k: tfds.features.Tensor(shape=(n,), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB)
                    for k, n in keys.items()
                },
                "action": tfds.features.Tensor(shape=(1,), dtype=np.float32),
            },
            episode_id=np.int64,
            timestamp=np.int64,
        )
        steps = {
            "observation": {k: np.full((2, n), 0.5, np.float32) for k, n in keys.items()},
            "action": np.zeros((2, 1), np.float32),
            "reward": np.ones(2, np.float32),
            **fx.flags(2),
        }
        episode = {"episode_id": 0, "timestamp": 0, "steps": steps}
        fx.write_rlds_dataset(tmp_path, "rlu_control_suite", task, features, [episode])
    plan = plan_work("control_suite", data_dir=str(tmp_path))
    assert plan.task_fields == {
        "rlu_control_suite/cartpole_swingup": {
            "action": continuous("linear"),
            "observation/position": continuous("mu_law"),
            "observation/velocity": continuous("mu_law"),
        },
        "rlu_control_suite/walker_walk": {
            "action": continuous("linear"),
            "observation/height": continuous("mu_law"),
        },
    }
    assert plan.dataset.return_source == RETURN_SUM_REWARDS
    item = plan.work_items[0]
    [raw] = read_shard(item, reader=ShardReader(item.builder_dir), spec=plan.dataset)
    np.testing.assert_array_equal(raw.steps["observation"]["velocity"], np.full((2, 2), 0.5, np.float32))
    assert raw.key.episode_id == "0" and raw.episode_metadata == {"episode_id": 0, "timestamp": 0}


def test_registry_datasets_use_episode_return(data_dir: Path) -> None:
    assert plan_work("babyai", data_dir=str(data_dir)).dataset.return_source == RETURN_EPISODE_RETURN


def test_rlds_datasets_are_planned_by_plan_rlds_dir_ignoring_the_data_dir(tmp_path: Path) -> None:
    fx.write_rlds_dataset(tmp_path, "my_robot", "stacking", fx.novel_features(), [fx.novel_episode(0, 2)])
    via_plan_work = plan_work(f"rlds:{tmp_path}", data_dir=str(tmp_path / "not-there"), tasks=["stack*"])
    assert via_plan_work == plan_rlds_dir(str(tmp_path), tasks=["stack*"], spec_path=None)
    assert via_plan_work.tasks == ["my_robot/stacking"]


def test_no_task_globs_is_an_error(data_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"no task globs given; use \('\*',\)"):
        plan_work("metaworld", data_dir=str(data_dir), tasks=())
