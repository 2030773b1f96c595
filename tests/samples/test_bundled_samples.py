"""The bundled sample datasets (samples/data) are real TFDS datasets in the public layouts.

Each dataset opens with `tfds.builder(name, data_dir=...)` (rlu_* through the public
builders TFDS registers, gato_* through `pipeline.tfds_builders`) and with
`tfds.builder_from_directory`, declares exactly the features of its builder, holds
episodes that obey the RLDS rules, has returns that vary, and the whole stays small.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import samples.tfds_builders as gato
from schemas.fields import (
    ACTION,
    CHECKPOINT_ID,
    DISCOUNT,
    EPISODE_ID,
    EPISODE_RETURN,
    IS_FIRST,
    IS_LAST,
    IS_TERMINAL,
    OBSERVATION,
    REWARD,
    STEPS,
)

DATA = Path(__file__).resolve().parents[2] / "samples" / "data"
BUDGET_BYTES = 25 * 2**20
_STEPS_PER_BATCH = 256

# (tfds name, config, version, episodes, shards): what samples/make_samples.py records.
BUNDLED: tuple[tuple[str, str, str, int, int], ...] = (
    ("rlu_atari", "Pong_run_1", "1.3.0", 12, 2),
    ("rlu_atari", "Breakout_run_1", "1.3.0", 12, 1),
    ("rlu_control_suite", "cartpole_swingup", "1.0.0", 8, 1),
    ("rlu_control_suite", "walker_walk", "1.0.0", 8, 1),
    ("rlu_dmlab_explore_object_rewards_few", "training_0", "1.2.0", 10, 1),
    ("rlu_dmlab_seekavoid_arena01", "training_0", "1.2.0", 10, 1),
    ("gato_metaworld", "reach-v3", "1.0.0", 10, 1),
    ("gato_metaworld", "push-v3", "1.0.0", 10, 1),
    ("gato_metaworld", "drawer-open-v3", "1.0.0", 10, 1),
    ("gato_babyai", "GoToRedBall", "1.0.0", 12, 1),
    ("gato_babyai", "GoToLocal", "1.0.0", 12, 1),
    ("gato_babyai", "PickupLoc", "1.0.0", 12, 1),
)
IDS = [f"{name}/{config}" for name, config, *_ in BUNDLED]


def _directory(name: str, config: str, version: str) -> Path:
    return DATA / name / config / version


@functools.cache
def read_bundled(name: str, config: str) -> list[dict[str, Any]]:
    """Every episode as numpy: episode-level fields plus `steps` stacked over time."""
    builder = tfds.builder(f"{name}/{config}", data_dir=str(DATA))
    episodes = []
    for episode in builder.as_dataset(split="train"):
        # Small batches: a huge batch size makes TF reserve memory for that many images.
        chunks = list(tfds.as_numpy(episode[STEPS].batch(_STEPS_PER_BATCH)))
        record = {k: v.numpy() for k, v in episode.items() if k != STEPS}
        record[STEPS] = tf.nest.map_structure(lambda *parts: np.concatenate(parts), *chunks)
        episodes.append(record)
    return episodes


def test_nothing_unlisted_is_bundled() -> None:
    """Every dataset directory on disk is one this file checks (and the other way round)."""
    on_disk = {str(p.parent.parent.relative_to(DATA)) for p in DATA.glob("*/*/*/dataset_info.json")}
    # coco_captions is a vision-language sample: tests/samples/test_make_vl_samples.py checks it.
    assert on_disk - {"coco_captions/2014"} == {f"{name}/{config}" for name, config, *_ in BUNDLED}


def test_total_size_is_within_budget() -> None:
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert 0 < total <= BUDGET_BYTES, f"samples/data holds {total / 2**20:.1f} MiB"


@pytest.mark.parametrize(("name", "config", "version", "episodes", "shards"), BUNDLED, ids=IDS)
def test_opens_by_name_with_its_builders_features(name: str, config: str, version: str, episodes: int, shards: int) -> None:
    builder = tfds.builder(f"{name}/{config}", data_dir=str(DATA))
    assert str(builder.version) == version
    assert builder.data_path == _directory(name, config, version)
    # The builder's code features (public TFDS builder / ours) are the ones written to disk.
    from_directory = tfds.builder_from_directory(str(_directory(name, config, version)))
    assert from_directory.info.features.to_json() == builder.info.features.to_json()
    split = from_directory.info.splits["train"]
    assert split.num_examples == episodes
    assert len(split.shard_lengths) == shards and min(split.shard_lengths) > 0
    files = sorted(p.name for p in _directory(name, config, version).glob("*.tfrecord-*"))
    assert files == [f"{name}-train.tfrecord-{i:05d}-of-{shards:05d}" for i in range(shards)]
    assert sum(1 for _ in from_directory.as_dataset(split="train")) == episodes


@pytest.mark.parametrize(("name", "config", "version", "episodes", "shards"), BUNDLED, ids=IDS)
def test_episodes_obey_rlds_rules(name: str, config: str, version: str, episodes: int, shards: int) -> None:
    read = read_bundled(name, config)
    assert sorted(int(e[EPISODE_ID]) for e in read) == list(range(episodes))
    for episode in read:
        steps = episode[STEPS]
        length = len(steps[IS_FIRST])
        where = f"{name}/{config} episode {episode[EPISODE_ID]}"
        assert length >= 2, where
        assert steps[IS_FIRST].tolist() == [True] + [False] * (length - 1), where
        assert steps[IS_LAST].tolist() == [False] * (length - 1) + [True], where
        assert not steps[IS_TERMINAL][:-1].any(), where
        assert np.all(np.isfinite(steps[REWARD])) and np.all(np.isin(steps[DISCOUNT], (0.0, 1.0))), where
        assert steps[DISCOUNT][-1] == (0.0 if steps[IS_TERMINAL][-1] else 1.0), where
        for leaf in tfds.core.utils.flatten_nest_dict(steps).values():
            assert len(leaf) == length, where
        if EPISODE_RETURN in episode:
            assert episode[EPISODE_RETURN] == pytest.approx(float(np.sum(steps[REWARD])), rel=1e-5, abs=1e-3)


def _returns(name: str, config: str) -> list[float]:
    return [float(np.sum(e[STEPS][REWARD])) for e in read_bundled(name, config)]


@pytest.mark.parametrize(("name", "config"), [b[:2] for b in BUNDLED], ids=IDS)
def test_returns_vary_across_episodes(name: str, config: str) -> None:
    """The filter (keep >= 80% of the expert return) needs episodes of differing skill."""
    returns = np.asarray(_returns(name, config))
    assert len(np.unique(np.round(returns, 3))) >= 3, returns
    best = returns.max()
    assert np.any(returns < best - 0.2 * abs(best)), f"no episode the filter would drop: {returns}"


@pytest.mark.parametrize("config", ["Pong_run_1", "Breakout_run_1"])
def test_atari_is_preprocessed_like_rl_unplugged(config: str) -> None:
    for episode in read_bundled("rlu_atari", config):
        steps = episode[STEPS]
        assert steps[OBSERVATION].shape[1:] == (84, 84, 1) and steps[OBSERVATION].dtype == np.uint8
        assert steps[OBSERVATION].std() > 0  # real frames, not blank
        assert set(np.unique(steps[REWARD])) <= {-1.0, 0.0, 1.0}  # clipped
        assert len(steps[REWARD]) <= 501  # truncated at 500 agent steps
    # Collection order (checkpoint_id, episode_id): checkpoints rise like a training run.
    order = sorted((int(e[CHECKPOINT_ID]), int(e[EPISODE_ID])) for e in read_bundled("rlu_atari", config))
    assert [c for c, _ in order] == sorted(c for c, _ in order) and order[-1][0] > order[0][0]


@pytest.mark.parametrize("config", ["cartpole_swingup", "walker_walk"])
def test_control_suite_actions_are_bounded_and_episodes_full_length(config: str) -> None:
    for episode in read_bundled("rlu_control_suite", config):
        steps = episode[STEPS]
        assert np.all(np.abs(steps[ACTION]) <= 1.0)
        assert len(steps[REWARD]) == 1001  # dm_control's 1000 steps plus the final observation
        assert not steps[IS_TERMINAL].any()  # time limits are truncations


def test_metaworld_and_babyai_layouts() -> None:
    for task in ("reach-v3", "push-v3", "drawer-open-v3"):
        for episode in read_bundled(gato.GATO_METAWORLD, task):
            steps = episode[STEPS]
            assert steps[OBSERVATION][gato.METAWORLD_STATE].shape[1:] == (39,)
            assert steps[ACTION].shape[1:] == (4,) and np.all(np.abs(steps[ACTION]) <= 1.0)
    for level in ("GoToRedBall", "GoToLocal", "PickupLoc"):
        for episode in read_bundled(gato.GATO_BABYAI, level):
            steps = episode[STEPS]
            observation = steps[OBSERVATION]
            assert observation[gato.BABYAI_IMAGE].shape[1:] == (7, 7, 3)
            assert observation[gato.BABYAI_IMAGE].dtype == np.uint8
            assert set(np.unique(observation[gato.BABYAI_DIRECTION])) <= {0, 1, 2, 3}
            assert np.all((steps[ACTION] >= 0) & (steps[ACTION] < gato.BABYAI_NUM_ACTIONS))
            missions = set(observation[gato.BABYAI_MISSION].tolist())
            assert len(missions) == 1 and len(next(iter(missions))) > 0  # one mission per episode


def test_dmlab_samples_say_they_are_synthetic() -> None:
    for name in ("rlu_dmlab_explore_object_rewards_few", "rlu_dmlab_seekavoid_arena01"):
        info = tfds.builder_from_directory(str(_directory(name, "training_0", "1.2.0"))).info
        assert "SYNTHETIC" in info.description
        pixels = read_bundled(name, "training_0")[0][STEPS][OBSERVATION]["pixels"]
        assert pixels.shape[1:] == (72, 96, 3)
        assert len({frame.tobytes() for frame in pixels}) > 1  # the view changes over time
