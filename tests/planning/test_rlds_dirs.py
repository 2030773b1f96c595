"""planning/rlds_dirs.py: `rlds:<dir>` datasets, every field inferred; spec files; layout errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from planning.rlds_dirs import plan_rlds_dir
from schemas.fields import continuous, discrete, image, text
from schemas.rlds_spec import RETURN_EPISODE_RETURN, RETURN_SUM_REWARDS
from tests import tfds_fixtures as fx

ALL = ("*",)


@pytest.fixture(scope="module")
def novel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("novel")
    episodes = [fx.novel_episode(i, 4) for i in range(2)]
    fx.write_rlds_dataset(root, "my_robot", "stacking", fx.novel_features(), episodes, num_shards=2)
    fx.write_rlds_dataset(root, "my_robot", "pouring", fx.novel_features(), episodes[:1])
    return root


def test_rlds_data_dir_infers_every_field(novel_dir: Path) -> None:
    plan = plan_rlds_dir(str(novel_dir), tasks=ALL, spec_path=None)
    assert plan.tasks == ["my_robot/pouring", "my_robot/stacking"]
    assert plan.dataset.name == "my_robot"
    assert plan.dataset.order_key == ("episode_id",)
    assert plan.dataset.return_source == RETURN_SUM_REWARDS  # no episode_return on disk
    assert plan.fields_for("my_robot/stacking") == {
        "action/arm": continuous("mu_law"),  # nothing on disk says it is bounded
        "action/gripper": discrete(),
        "observation/camera/rgb": image(),
        "observation/instruction": text(),
        "observation/joints": continuous("mu_law"),
    }
    assert len(plan.work_items) == 3
    assert [w.task for w in plan.work_items] == ["my_robot/pouring", "my_robot/stacking", "my_robot/stacking"]
    assert plan.field_shapes["my_robot/stacking"] == {
        "action/arm": (3,),
        "action/gripper": (),
        "observation/camera/rgb": (20, 24, 3),
        "observation/instruction": (),
        "observation/joints": (5,),
    }


def test_rlds_builder_dir_with_spec_file(novel_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'task = "stack"\n[fields."action/arm"]\nencoding = "linear"\n'
        '[fields."observation/camera/rgb"]\nsize = [32, 32]\n'
    )
    builder = novel_dir / "my_robot" / "stacking" / "1.0.0"
    plan = plan_rlds_dir(str(builder), tasks=ALL, spec_path=str(spec))
    assert plan.tasks == ["stack"]
    fields = plan.fields_for("stack")
    assert fields["action/arm"] == continuous("linear")
    assert fields["observation/camera/rgb"] == image((32, 32))
    assert {w.task for w in plan.work_items} == {"stack"}
    # A fixed task name cannot cover two configs.
    with pytest.raises(ValueError, match="task = 'stack' but 2 configs"):
        plan_rlds_dir(str(novel_dir), tasks=ALL, spec_path=str(spec))


def test_rlds_spec_file_in_the_dir_is_used(tmp_path: Path) -> None:
    builder = fx.write_rlds_dataset(tmp_path, "my_robot", "stacking", fx.novel_features(), [fx.novel_episode(0, 2)])
    (tmp_path / "gato_spec.toml").write_text('return = "episode_return"\n')
    with pytest.raises(ValueError, match="no 'episode_return' field"):
        plan_rlds_dir(str(tmp_path), tasks=ALL, spec_path=None)
    (tmp_path / "gato_spec.toml").write_text('order_key = ["checkpoint"]\n')
    with pytest.raises(ValueError, match=r"order_key fields \['checkpoint'\]"):
        plan_rlds_dir(str(tmp_path), tasks=ALL, spec_path=None)
    with pytest.raises(ValueError, match="spec file .*missing.toml does not exist"):
        plan_rlds_dir(str(builder), tasks=ALL, spec_path=str(tmp_path / "missing.toml"))


def test_rlds_dir_without_datasets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no TFDS dataset found"):
        plan_rlds_dir(str(tmp_path), tasks=ALL, spec_path=None)


def test_an_episode_return_field_is_the_return_source_and_no_id_means_no_order_key(tmp_path: Path) -> None:
    features = fx.episode_features(
        {"observation": tfds.features.Tensor(shape=(2,), dtype=np.float32), "action": np.int64},
        episode_return=np.float32,
    )
    steps = {"observation": np.zeros((3, 2), np.float32), "action": np.zeros(3, np.int64),
             "reward": np.ones(3, np.float32), **fx.flags(3)}
    fx.write_rlds_dataset(tmp_path, "bare", "c", features, [{"episode_return": 3.0, "steps": steps}])
    plan = plan_rlds_dir(str(tmp_path), tasks=ALL, spec_path=None)
    assert plan.dataset.return_source == RETURN_EPISODE_RETURN
    assert plan.dataset.order_key == () and plan.dataset.id_fields == ()
    assert plan.fields_for("bare/c") == {"action": discrete(), "observation": continuous("mu_law")}


def test_a_dataset_without_rlds_flags_is_not_an_rlds_dataset(tmp_path: Path) -> None:
    features = tfds.features.FeaturesDict({
        "episode_id": np.int64,
        "steps": tfds.features.Dataset({"observation": np.float32, "reward": np.float32}),
    })
    steps = {"observation": np.zeros(2, np.float32), "reward": np.zeros(2, np.float32)}
    fx.write_rlds_dataset(tmp_path, "noflags", "c", features, [{"episode_id": 0, "steps": steps}])
    with pytest.raises(ValueError) as e:
        plan_rlds_dir(str(tmp_path), tasks=ALL, spec_path=None)
    message = str(e.value)
    assert "task 'noflags/c'" in message and "is not an RLDS dataset" in message
    assert "missing ['steps/is_first', 'steps/is_last']" in message


def test_task_globs_select_configs(novel_dir: Path) -> None:
    plan = plan_rlds_dir(str(novel_dir), tasks=["pour*"], spec_path=None)
    assert plan.tasks == ["my_robot/pouring"]
    with pytest.raises(ValueError, match="task glob 'nothing' matches no task of 'rlds:"):
        plan_rlds_dir(str(novel_dir), tasks=["nothing"], spec_path=None)
