"""The Sequence stage (pass 2): (EpisodeKey, TokenizedEpisode) -> (EpisodeKey, SequenceBatch).

`transforms.sequence.sequence_episode` cuts the episode into rows of L tokens, with the
task's prompt pool (built in pass 1, `pipeline.prompt_pools`) and the filter thresholds
as side inputs. A candidate prompts an episode only if its return reaches the task
threshold and it is another episode. An episode that cannot be cut (a timestep longer
than L) is a `Reject` on the `rejects` output, or with `strict` an error naming file
and episode.

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

from pipeline.counters import TaskCounters
from pipeline.rejects import reject_or_raise
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
        self._counters = TaskCounters(COUNTER_NAMESPACE)

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
            in_context = SequencingError(
                error.reason, f"{key.location()}: {error.detail}", episode=error.episode,
                timestep=error.timestep, value=error.value,
            )
            reject = Reject.of_episode(key, reason=error.reason, field=None, detail=str(error))
            yield reject_or_raise(
                reject, strict=self._strict, counters=self._counters, counter=C_REJECTED,
                error=in_context, cause=error,
            )
            return
        self._count_batch(task, batch)
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, (task, SequenceCounts.of(batch)))
        yield key, batch

    def _count_batch(self, task: TaskKey, batch: SequenceBatch) -> None:
        self._counters.inc(task, C_SEQUENCES, batch.num_sequences)
        self._counters.inc(task, C_PROMPTED, batch.num_prompted)
        self._counters.inc(task, C_UNPROMPTED, batch.num_unprompted)
        self._counters.inc(task, C_PROMPTS_UNAVAILABLE, batch.prompts_unavailable)
        self._counters.inc(task, C_TOKENS, batch.total_tokens)
