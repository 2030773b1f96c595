"""Shared helpers of the pipeline/ Beam stage tests: a small RawEpisode, toy keys and prompt
candidates for the sequencing stages, and a pipeline result's counters."""

from __future__ import annotations

from typing import Any

from apache_beam.metrics.metric import MetricsFilter

from tests.episode_fixtures import raw_episode  # noqa: F401 - re-exported for the stage tests
from tests.sequence_fixtures import make_episode
from transforms.episode import EpisodeKey, TaskKey
from transforms.prompt_choice import prompt_candidate_for
from transforms.prompts import PromptCandidate, slice_timesteps
from transforms.sequence import SequenceConfig

RUNNER = "BundleBasedDirectRunner"
SEQUENCE_CONFIG = SequenceConfig(sequence_length=24, prompt_fraction=0.5, seed=11)


def toy_key(task: str, episode_id: str, index: int = 0) -> EpisodeKey:
    """A key of dataset "toy", read from `shard-<last letter of task>.tfrecord`."""
    return EpisodeKey("toy", task, episode_id, (index,), f"shard-{task[-1]}.tfrecord", index, 0)


def toy_candidate(task: str, episode_id: str, value: float, seed: int) -> tuple[TaskKey, PromptCandidate]:
    """(TaskKey, PromptCandidate) of a 12-timestep built episode, windowed for SEQUENCE_CONFIG."""
    episode = make_episode([1 + (seed + t) % 3 for t in range(12)], seed=seed).episode
    return prompt_candidate_for(
        toy_key(task, episode_id), value, episode.num_timesteps,
        lambda a, b: slice_timesteps(episode, a, b), config=SEQUENCE_CONFIG,
    )


def committed_counters(result: Any, namespace: str) -> dict[str, int]:
    """{counter name: committed value} of one namespace of a finished pipeline."""
    return {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    }
