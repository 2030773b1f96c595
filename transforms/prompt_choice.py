"""Beam stages of sequencing: per-task prompt pools (pass 1) and sequencing (pass 2).

- `prompt_candidate_for`: pass 1, one episode -> (TaskKey, PromptCandidate), tokenizing
  only the timesteps of its prompt windows.
- `PromptCandidateKeys`: pass 1, per task, the keys of the top-K episodes by the pool
  order, from their returns alone (the only episodes whose windows pass 1 tokenizes).
- `PromptPools` / `PromptPoolCombine`: per task, the top-K candidates by (return
  descending, stable hash); mergeable, memory bounded by K candidates per task.
- `SequenceEpisodes`: (EpisodeKey, TokenizedEpisode) -> (EpisodeKey, SequenceBatch),
  with the pools and the filter thresholds as side inputs. A candidate prompts an
  episode only if its return reaches the task threshold and it is another episode.
  An episode that cannot be cut (a timestep longer than L) is a `Reject` on the
  `rejects` tagged output, or with `strict` an error naming file and episode.

Counters (namespace `gato.sequence`, names `<dataset>/<task>/<what>`): sequences,
prompted_sequences, unprompted_sequences, prompts_unavailable (rows that drew a prompt
while the task had no eligible other episode: a one-episode task shows all its draws
here), sequence_tokens (before padding), rejected.
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
