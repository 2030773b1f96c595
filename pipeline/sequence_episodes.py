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

import math
from collections.abc import Iterator, Mapping
from typing import Any

import apache_beam as beam

from pipeline.counters import counter_name
from transforms.books import SequenceCounts
from transforms.episode import EpisodeKey, Reject, TaskKey
from transforms.prompts import PromptPool
from transforms.sequence import (
    SequenceBatch,
    SequenceConfig,
    SequencingError,
    sequence_episode,
)
from transforms.types import TokenizedEpisode

COUNTER_NAMESPACE = "gato.sequence"
REJECTS_TAG = "rejects"
COUNTS_TAG = "counts"
C_SEQUENCES = "sequences"
C_PROMPTED = "prompted_sequences"
C_UNPROMPTED = "unprompted_sequences"
C_PROMPTS_UNAVAILABLE = "prompts_unavailable"
C_TOKENS = "sequence_tokens"
C_REJECTED = "rejected"


class SumSequenceCounts(beam.PTransform):
    """(TaskKey, SequenceCounts) per episode -> (TaskKey, SequenceCounts) per task."""

    def expand(self, counts: beam.PCollection) -> beam.PCollection:
        return counts | "SumPerTask" >> beam.CombinePerKey(
            lambda values: sum(values, start=SequenceCounts())
        )


def _threshold_of(thresholds: Mapping[TaskKey, Any], task: TaskKey) -> float:
    """The task's keep threshold; -inf without one (e.g. --no_filter: every candidate counts)."""
    found = thresholds.get(task)
    return -math.inf if found is None else float(found.threshold)


class SequenceEpisodes(beam.DoFn):
    """(EpisodeKey, TokenizedEpisode) -> (EpisodeKey, SequenceBatch); module docstring.

    Tagged outputs: `rejects` (Reject) and `counts` ((TaskKey, SequenceCounts) per
    episode; sum them with `SumSequenceCounts` for the statistics). Apply with
    `.with_outputs(REJECTS_TAG, COUNTS_TAG, main=...)`.

    Side inputs: `pools` {TaskKey: PromptPool} and `thresholds` {TaskKey: object with a
    `.threshold` float}, e.g. `beam.pvalue.AsDict(...)` of each.
    """

    def __init__(self, config: SequenceConfig, *, strict: bool = False) -> None:
        self._config = config
        self._strict = strict

    def setup(self) -> None:
        self._counters: dict[tuple[TaskKey, str], Any] = {}

    def _count(self, task: TaskKey, what: str, n: int = 1) -> None:
        if n == 0:
            return
        counter = self._counters.get((task, what))
        if counter is None:
            counter = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, counter_name(task, what))
            self._counters[(task, what)] = counter
        counter.inc(n)

    def process(
        self,
        element: tuple[EpisodeKey, TokenizedEpisode],
        pools: Mapping[TaskKey, PromptPool],
        thresholds: Mapping[TaskKey, Any],
    ) -> Iterator[Any]:
        key, episode = element
        task = key.task_key
        pool = pools.get(task)
        eligible = (
            ()
            if pool is None
            else pool.eligible(threshold=_threshold_of(thresholds, task), exclude=key.episode_id)
        )
        try:
            batch = sequence_episode(
                episode, episode_id=key.episode_id, task=key.task, config=self._config, prompts=eligible
            )
        except SequencingError as error:
            where = f"file {key.source_file!r} (record {key.index_in_file}), task {key.task!r}"
            if self._strict:
                raise SequencingError(
                    error.reason, f"{where}: {error.detail}", episode=error.episode,
                    timestep=error.timestep, value=error.value,
                ) from error
            self._count(task, C_REJECTED)
            yield beam.pvalue.TaggedOutput(
                REJECTS_TAG,
                Reject(
                    dataset=key.dataset,
                    task=key.task,
                    episode_id=key.episode_id,
                    source_file=key.source_file,
                    reason=error.reason,
                    field=None,
                    detail=str(error),
                ),
            )
            return
        self._count_batch(task, batch)
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, (task, SequenceCounts.of(batch)))
        yield key, batch

    def _count_batch(self, task: TaskKey, batch: SequenceBatch) -> None:
        self._count(task, C_SEQUENCES, batch.num_sequences)
        self._count(task, C_PROMPTED, batch.num_prompted)
        self._count(task, C_UNPROMPTED, batch.num_unprompted)
        self._count(task, C_PROMPTS_UNAVAILABLE, batch.prompts_unavailable)
        self._count(task, C_TOKENS, batch.total_tokens)
