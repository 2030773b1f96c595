"""samples/make_samples.py reproduces the bundled episodes exactly from the seed.

The DM Lab episodes are synthetic (numpy only), so that check runs everywhere; the others
need the simulators (the `samples` extra) and are skipped without them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tensorflow_datasets as tfds

import samples.tfds_builders as gato
from schemas.fields import EPISODE_ID, STEPS
from tests.samples.test_bundled_samples import read_bundled

SCRIPT = Path(__file__).resolve().parents[2] / "samples" / "make_samples.py"


def load_script(path: Path) -> ModuleType:
    """A script of samples/ as a module named after its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_samples() -> ModuleType:
    return load_script(SCRIPT)


def _bundled(name: str, config: str, episode: int) -> dict[str, Any]:
    (found,) = [e for e in read_bundled(name, config) if int(e[EPISODE_ID]) == episode]
    return found


def _assert_same_episode(recorded: dict[str, Any], bundled: dict[str, Any]) -> None:
    """Field by field; text is bytes once read back, str when recorded."""
    flat_recorded = tfds.core.utils.flatten_nest_dict(recorded)
    flat_bundled = tfds.core.utils.flatten_nest_dict(bundled)
    assert flat_recorded.keys() == flat_bundled.keys()
    for path, value in flat_recorded.items():
        value = np.asarray(value)
        if value.dtype.kind == "U":
            value = np.char.encode(value, "utf-8")
        np.testing.assert_array_equal(value, np.asarray(flat_bundled[path]), err_msg=path)


@pytest.mark.parametrize("name", ["rlu_dmlab_explore_object_rewards_few", "rlu_dmlab_seekavoid_arena01"])
def test_synthetic_dmlab_episode_is_reproduced(make_samples: ModuleType, name: str) -> None:
    recorded = make_samples.record_dmlab_episode(name, 7, seed=0)
    _assert_same_episode(recorded, _bundled(name, make_samples.DMLAB_CONFIG, 7))


def test_another_seed_gives_other_episodes(make_samples: ModuleType) -> None:
    name = make_samples.DMLAB_DATASETS[0]
    first = make_samples.record_dmlab_episode(name, 7, seed=0)[STEPS]["action"]
    other = make_samples.record_dmlab_episode(name, 7, seed=1)[STEPS]["action"]
    assert not np.array_equal(first, other)


def _needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} (the samples extra) is not installed"
    )


@_needs("minigrid")
def test_babyai_episode_is_reproduced() -> None:
    _assert_same_episode(gato.record_babyai_episode("PickupLoc", 4, seed=0), _bundled("gato_babyai", "PickupLoc", 4))


@_needs("metaworld")
def test_metaworld_episode_is_reproduced() -> None:
    _assert_same_episode(gato.record_metaworld_episode("push-v3", 3, seed=0), _bundled("gato_metaworld", "push-v3", 3))


@_needs("dm_control")
def test_control_suite_episode_is_reproduced(make_samples: ModuleType) -> None:
    recorded = make_samples.record_control_episode("cartpole", "swingup", 5, seed=0)
    _assert_same_episode(recorded, _bundled("rlu_control_suite", "cartpole_swingup", 5))


@_needs("ale_py")
def test_atari_episode_is_reproduced(make_samples: ModuleType) -> None:
    recorded = make_samples.record_atari_episode("Breakout", "breakout", 9, seed=0)
    _assert_same_episode(recorded, _bundled("rlu_atari", "Breakout_run_1", 9))


def test_only_rejects_unknown_names(make_samples: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        make_samples.main(["--out", "/nonexistent", "--only", "atari,mujoco"])
    assert "unknown --only ['mujoco']" in capsys.readouterr().err

