"""pipeline/tfds_builders.py: the RLDS step layout of recorded episodes, config names, and
the error a user gets when recording without the simulators."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import samples.tfds_builders as gato
from schemas.fields import ACTION, DISCOUNT, IS_FIRST, IS_LAST, IS_TERMINAL, OBSERVATION, REWARD


def test_rlds_episode_places_flags_and_the_final_step() -> None:
    steps = gato.rlds_episode(
        [np.full(2, t, np.float32) for t in range(4)],
        [np.int64(5), np.int64(6), np.int64(7)],
        [0.5, 0.0, 1.0],
        terminal=True,
        final_action=np.int64(0),
    )
    assert steps[OBSERVATION][:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert steps[ACTION].tolist() == [5, 6, 7, 0]
    assert steps[REWARD].tolist() == [0.5, 0.0, 1.0, 0.0]
    assert steps[IS_FIRST].tolist() == [True, False, False, False]
    assert steps[IS_LAST].tolist() == [False, False, False, True]
    assert steps[IS_TERMINAL].tolist() == [False, False, False, True]
    assert steps[DISCOUNT].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_rlds_episode_truncation_is_not_terminal_and_dicts_stack() -> None:
    steps = gato.rlds_episode(
        [{"a": np.zeros(3), "b": np.int64(t)} for t in range(2)],
        [np.zeros(1)],
        [2.0],
        terminal=False,
        final_action=np.ones(1),
    )
    assert steps[OBSERVATION]["a"].shape == (2, 3) and steps[OBSERVATION]["b"].tolist() == [0, 1]
    assert steps[IS_LAST].tolist() == [False, True]
    assert not steps[IS_TERMINAL].any() and steps[DISCOUNT].tolist() == [1.0, 1.0]


def test_rlds_episode_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="T\\+1 observations for T actions"):
        gato.rlds_episode([np.zeros(1)] * 3, [np.zeros(1)], [0.0], terminal=False, final_action=np.zeros(1))


def test_builders_register_one_config_per_task() -> None:
    metaworld = tfds.builder("gato_metaworld/reach-v3")
    assert str(metaworld.version) == gato.GATO_VERSION
    assert {c.name for c in gato.GatoMetaworld.BUILDER_CONFIGS} == set(gato.METAWORLD_TASKS)
    assert len(gato.METAWORLD_TASKS) == 50
    babyai = tfds.builder("gato_babyai/GoToRedBall")
    assert babyai.info.features["steps"]["observation"]["image"].shape == (7, 7, 3)
    assert {c.name for c in gato.GatoBabyai.BUILDER_CONFIGS} == set(gato.BABYAI_LEVELS)


@pytest.mark.skipif(importlib.util.find_spec("metaworld") is not None, reason="metaworld is installed")
def test_recording_without_metaworld_names_the_samples_extra(tmp_path: Path) -> None:
    builder = tfds.builder("gato_metaworld/reach-v3", data_dir=str(tmp_path))
    with pytest.raises(ImportError, match=r"pip install -e '\.\[samples\]'"):
        builder.download_and_prepare()


@pytest.mark.skipif(importlib.util.find_spec("minigrid") is not None, reason="minigrid is installed")
def test_recording_without_minigrid_names_the_samples_extra() -> None:
    with pytest.raises(ImportError, match="'minigrid'.*'samples' extra"):
        gato.record_babyai_episode("GoToRedBall", 0)
