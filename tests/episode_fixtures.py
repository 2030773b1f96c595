"""Test data shared by tests of several folders: a small RawEpisode, the spec's filter
computed by brute force, and a small RLDS dataset no registry entry knows (`novel`, with
its `plan` and `read_all`; import the fixtures by name to use them)."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formats.tfds_shards import ShardReader, read_shard
from planning.plan import plan_work
from planning.work import Plan
from tests import tfds_fixtures as fx
from transforms.episode import EpisodeKey, RawEpisode, WorkItem


def raw_episode(
    num_steps: int = 4, *, episode_id: str = "7", first: list[int] | None = None,
    last: list[int] | None = None,
) -> RawEpisode:
    """A metaworld-keyed episode: `observation/state` (2 floats), `action` (int) and the flags;
    is_first at step 0 and is_last at the end unless `first` / `last` say otherwise."""
    is_first = np.zeros(num_steps, bool)
    is_first[[0] if first is None else first] = True
    is_last = np.zeros(num_steps, bool)
    is_last[[num_steps - 1] if last is None else last] = True
    steps: dict[str, Any] = {
        "observation": {"state": np.arange(num_steps * 2, dtype=np.float32).reshape(num_steps, 2)},
        "action": np.arange(num_steps, dtype=np.int64),
        "reward": np.full(num_steps, 0.5, np.float32),
        "is_first": is_first,
        "is_last": is_last,
    }
    key = EpisodeKey("metaworld", "gato_metaworld/reach-v3", episode_id, (int(episode_id),), "shard-0", 3)
    return RawEpisode(key=key, steps=steps, episode_metadata={"episode_return": np.float32(2.25)})


def brute_force(returns: list[float], fraction: float = 0.8, cap: int = 1000) -> tuple[int, float, float, int]:
    """(W, E, threshold, window_start) straight from the spec: every window summed exactly."""
    n = len(returns)
    w = max(1, min(cap, math.floor(n / 10)))
    means = [math.fsum(returns[j : j + w]) / w for j in range(n - w + 1)]
    best = max(means)
    start = means.index(best)  # the first best window in collection order
    slack = round(1 - fraction, 12)  # the spec's 0.2 for 0.8, without binary 1 - 0.8 noise
    return w, best, best - slack * abs(best), start


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
