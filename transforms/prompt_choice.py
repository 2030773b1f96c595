"""Pass 1's prompt choices, without Beam: which episodes give a task's prompt pool its windows.

- `prompt_candidate_for`: one episode -> (TaskKey, PromptCandidate): its end window and a
  few uniformly placed windows within the prompt budget (`transforms.prompts`), tokenizing
  only those timesteps (through the `tokenize_slice` callback).
- `CandidateSelection`: a task's top-K episode keys in the pool's order (return
  descending, then a stable hash), chosen from returns alone, and the number of valid
  episodes of the task; `indices_in(work_item)` gives the records to decode in one shard.
- `short_selections`: the tasks where a chosen episode gave no candidate (broken in full,
  or no window fits) while other episodes remain. Their pools need the rest of the task's
  windows too, so every pool equals the one built from the windows of every episode.

The Beam stages are in `pipeline/prompt_pools.py`; pools themselves in `transforms/prompts.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from transforms.episode import EpisodeKey, TaskKey
from transforms.prompts import (
    DEFAULT_NUM_UNIFORM_WINDOWS,
    PromptCandidate,
    prompt_candidate,
    prompt_windows,
)
from transforms.sequence import SequenceConfig
from transforms.types import TokenizedEpisode


def prompt_candidate_for(
    key: EpisodeKey,
    episode_return: float,
    num_timesteps: int,
    tokenize_slice: Callable[[int, int], TokenizedEpisode],
    *,
    config: SequenceConfig,
    num_uniform: int = DEFAULT_NUM_UNIFORM_WINDOWS,
) -> tuple[TaskKey, PromptCandidate]:
    """Pass 1: an episode's prompt windows (within `config.budget`), keyed by its task."""
    windows = prompt_windows(
        num_timesteps,
        tokenize_slice,
        budget=config.budget,
        seed=config.seed,
        task=key.task,
        episode_id=key.episode_id,
        num_uniform=num_uniform,
    )
    candidate = prompt_candidate(
        key.episode_id, episode_return, windows, seed=config.seed, task=key.task
    )
    return key.task_key, candidate


@dataclasses.dataclass(frozen=True)
class CandidateSelection:
    """A task's prompt candidates chosen by return: `keys` best first, out of `episodes`."""

    keys: tuple[EpisodeKey, ...]
    episodes: int  # valid episodes of the task (pass 1's light check)

    def indices_in(self, work_item: int) -> frozenset[int]:
        """Record indices of the chosen episodes in one work item's shard."""
        return frozenset(k.index_in_file for k in self.keys if k.work_item == work_item)


def short_selections(
    selections: Mapping[TaskKey, CandidateSelection], found: Mapping[TaskKey, int]
) -> dict[TaskKey, CandidateSelection]:
    """Tasks where a chosen episode gave no candidate (broken in full, or no window fit)
    while episodes outside the choice remain: their pools need the other episodes too.

    `found`: the candidates the chosen episodes gave, per task.
    """
    short = {}
    for task, selection in selections.items():
        if found.get(task, 0) < len(selection.keys) and selection.episodes > len(selection.keys):
            short[task] = selection
    return short
