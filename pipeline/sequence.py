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
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam

from pipeline.episode import EpisodeKey, EpisodeReturn, Reject, TaskKey
from pipeline.filter import counter_name
from transforms.prompts import (
    DEFAULT_NUM_UNIFORM_WINDOWS,
    DEFAULT_POOL_SIZE,
    PromptCandidate,
    PromptPool,
    candidate_sort_key,
    prompt_candidate,
    prompt_windows,
)
from transforms.sequence import SequenceBatch, SequenceConfig, SequencingError, sequence_episode
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


@dataclasses.dataclass(frozen=True)
class SequenceCounts:
    """Sequencing figures of one episode, or summed over a task (for the statistics).

    `prompts_unavailable` counts rows that drew a prompt while no other eligible episode
    existed: for a one-episode task it is about `prompt_fraction * sequences`.
    """

    episodes: int = 0
    sequences: int = 0
    prompted: int = 0
    unprompted: int = 0
    prompts_unavailable: int = 0
    tokens: int = 0  # before padding, prompts included

    @classmethod
    def of(cls, batch: SequenceBatch) -> SequenceCounts:
        return cls(1, batch.num_sequences, batch.num_prompted, batch.num_unprompted,
                   batch.prompts_unavailable, batch.total_tokens)

    def __add__(self, other: SequenceCounts) -> SequenceCounts:
        return SequenceCounts(*(getattr(self, f.name) + getattr(other, f.name)
                                for f in dataclasses.fields(self)))


class SumSequenceCounts(beam.PTransform):
    """(TaskKey, SequenceCounts) per episode -> (TaskKey, SequenceCounts) per task."""

    def expand(self, counts: beam.PCollection) -> beam.PCollection:
        return counts | "SumPerTask" >> beam.CombinePerKey(
            lambda values: sum(values, start=SequenceCounts())
        )


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


_Ranked = tuple[tuple[Any, ...], EpisodeKey]  # (pool order, collection order), key


class CandidateKeysCombine(beam.CombineFn):
    """EpisodeReturn -> CandidateSelection of the best `capacity` (bounded accumulator).

    The order is the pool's (`candidate_sort_key`), so when every chosen episode yields
    windows, the pool built from them is the pool built from all episodes.
    """

    def __init__(self, capacity: int, *, seed: int) -> None:
        super().__init__()
        self._capacity = capacity
        self._seed = seed

    def create_accumulator(self) -> tuple[int, tuple[_Ranked, ...]]:
        return 0, ()

    def _top(self, ranked: Iterable[_Ranked]) -> tuple[_Ranked, ...]:
        return tuple(sorted(ranked, key=lambda r: r[0])[: self._capacity])

    def add_input(self, accumulator: tuple[int, tuple[_Ranked, ...]], value: EpisodeReturn) -> Any:
        return self.add_inputs(accumulator, [value])

    def add_inputs(self, accumulator: tuple[int, tuple[_Ranked, ...]], values: Iterable[EpisodeReturn]) -> Any:
        count, top = accumulator
        batch: list[_Ranked] = []
        for value in values:
            key = value.key
            order = candidate_sort_key(key.episode_id, value.value, seed=self._seed, task=key.task)
            batch.append(((*order, key.sort_key()), key))
            count += 1
            if len(batch) >= max(self._capacity, 1) * 4:  # stay bounded on long inputs
                top, batch = self._top((*top, *batch)), []
        return count, self._top((*top, *batch))

    def merge_accumulators(self, accumulators: Iterable[tuple[int, tuple[_Ranked, ...]]]) -> Any:
        count, top = 0, ()
        for other_count, other_top in accumulators:
            count, top = count + other_count, self._top((*top, *other_top))
        return count, top

    def extract_output(self, accumulator: tuple[int, tuple[_Ranked, ...]]) -> CandidateSelection:
        count, top = accumulator
        return CandidateSelection(keys=tuple(key for _, key in top), episodes=count)


class PromptCandidateKeys(beam.PTransform):
    """EpisodeReturn -> (TaskKey, CandidateSelection): the side input of pass 1's windows."""

    def __init__(self, capacity: int = DEFAULT_POOL_SIZE, *, seed: int) -> None:
        super().__init__()
        self._capacity = capacity
        self._seed = seed

    def expand(self, returns: beam.PCollection) -> beam.PCollection:
        return (
            returns
            | "ByTask" >> beam.Map(lambda r: (r.key.task_key, r))
            | "TopByReturn" >> beam.CombinePerKey(CandidateKeysCombine(self._capacity, seed=self._seed))
        )


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


class PromptPoolCombine(beam.CombineFn):
    """PromptCandidate -> PromptPool of the best `capacity` candidates (bounded accumulator)."""

    def __init__(self, capacity: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__()
        self._capacity = capacity

    def create_accumulator(self) -> PromptPool:
        return PromptPool(capacity=self._capacity)

    def add_input(self, accumulator: PromptPool, candidate: PromptCandidate) -> PromptPool:
        return accumulator.merged([candidate])

    def add_inputs(self, accumulator: PromptPool, candidates: Iterable[PromptCandidate]) -> PromptPool:
        pool = accumulator
        batch: list[PromptCandidate] = []
        for candidate in candidates:
            batch.append(candidate)
            if len(batch) >= max(self._capacity, 1) * 4:  # stay bounded on long inputs
                pool, batch = pool.merged(batch), []
        return pool.merged(batch)

    def merge_accumulators(self, accumulators: Iterable[PromptPool]) -> PromptPool:
        pool = self.create_accumulator()
        for other in accumulators:
            pool = pool.merged(other.candidates)
        return pool

    def extract_output(self, accumulator: PromptPool) -> PromptPool:
        return accumulator


class PromptPools(beam.PTransform):
    """(TaskKey, PromptCandidate) -> (TaskKey, PromptPool): the per-task side input."""

    def __init__(self, capacity: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__()
        self._capacity = capacity

    def expand(self, candidates: beam.PCollection) -> beam.PCollection:
        return candidates | "TopCandidates" >> beam.CombinePerKey(PromptPoolCombine(self._capacity))


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
