"""All of pass 1's prompt pools: per task, a bounded pool of prompt windows (spec section 5).

The pool of a task is its top K candidates by (return descending, stable hash), each
candidate a few tokenized windows of one usable episode. Since only returns decide it,
`BuildPromptPools` first picks each task's top K episode keys from pass 1's returns
(`PromptCandidateKeys`; usable episodes only, by pass 1's verdict in
`transforms/verdict.py`, so a reject never takes a place in a pool), decodes and windows only those records (`PromptWindowsFn`),
and only for a task where a chosen episode gives no candidate (broken in full, or no
window fits) also windows the rest of the task, so the pools equal those built from
every episode (`PromptCandidatesFn` over all valid episodes, kept for that check).
Memory is bounded by K candidates per task in every combiner.

Counter: `gato.prompts:<dataset>/<task>/prompt_candidate_unusable` (an episode whose
windows do not tokenize; pass 2 rejects it with the reason).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam

from formats.tfds_shards import ShardReaders, read_shard
from pipeline.counters import TaskCounters
from schemas.datasets import DatasetSpec
from transforms.episode import (
    EpisodeKey,
    EpisodeReturn,
    RawEpisode,
    Reject,
    TaskKey,
    WorkItem,
)
from transforms.errors import TokenizationError
from transforms.prompt_choice import (
    CandidateSelection,
    prompt_candidate_for,
    short_selections,
)
from transforms.prompts import (
    DEFAULT_POOL_SIZE,
    PromptCandidate,
    PromptPool,
    candidate_sort_key,
)
from transforms.rlds_rules import RldsViolation, check_rlds, episode_return
from transforms.sequence import SequenceConfig
from transforms.steps import emitted_steps, num_emitted_steps, slice_steps
from transforms.task_tokenizer import TaskTokenizer, TokenizerConfig

COUNTER_NAMESPACE = "gato.prompts"


class PromptCandidatesFn(beam.DoFn):
    """Pass 1: RawEpisode -> (TaskKey, PromptCandidate), tokenizing only its prompt windows.

    An episode whose windows fail to tokenize offers no prompt material; it is not lost:
    pass 2 tokenizes it in full and rejects it with the reason (counted here too).
    """

    def __init__(
        self,
        config: TokenizerConfig,
        *,
        sequence: SequenceConfig,
        return_fn: Callable[[RawEpisode], float],
    ) -> None:
        self._config = config
        self._sequence = sequence
        self._return_fn = return_fn

    def setup(self) -> None:
        self._tokenizer = TaskTokenizer(self._config)
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, raw: RawEpisode) -> Iterator[tuple[TaskKey, PromptCandidate]]:
        return self._candidate(raw)

    def _candidate(self, raw: RawEpisode) -> Iterator[tuple[TaskKey, PromptCandidate]]:
        steps = emitted_steps(raw)
        try:
            yield prompt_candidate_for(
                raw.key,
                self._return_fn(raw),
                num_emitted_steps(raw),
                lambda start, stop: self._tokenizer(raw.key, slice_steps(steps, start, stop)),
                config=self._sequence,
            )
        except TokenizationError:
            self._counters.inc(raw.key.task_key, "prompt_candidate_unusable")


class PromptWindowsFn(PromptCandidatesFn):
    """Pass 1: WorkItem -> (TaskKey, PromptCandidate) for the chosen episodes of its shard.

    Side input `selections` {TaskKey: CandidateSelection}. By default only the chosen
    records are decoded (a shard with none is not opened); with `rest=True` (the fallback
    for tasks where a chosen episode gave no candidate) every record except the chosen
    ones. Records are validated in full first: a broken or corrupt one offers nothing
    (pass 2 rejects it with the reason).
    """

    def __init__(
        self,
        spec: DatasetSpec,
        config: TokenizerConfig,
        *,
        sequence: SequenceConfig,
        return_fn: Callable[[RawEpisode], float],
        rest: bool = False,
    ) -> None:
        super().__init__(config, sequence=sequence, return_fn=return_fn)
        self._spec = spec
        self._rest = rest

    def setup(self) -> None:
        super().setup()
        self._readers = ShardReaders()

    def process(  # type: ignore[override]
        self, item: WorkItem, selections: Mapping[TaskKey, CandidateSelection]
    ) -> Iterator[tuple[TaskKey, PromptCandidate]]:
        selection = selections.get((item.dataset, item.task))
        if selection is None:
            return
        chosen = selection.indices_in(item.index)
        if not chosen and not self._rest:
            return
        reader = self._readers(item.builder_dir)
        only = None if self._rest else chosen
        for raw in read_shard(item, reader=reader, spec=self._spec, only=only):
            if isinstance(raw, Reject) or (self._rest and raw.key.index_in_file in chosen):
                continue
            try:
                check_rlds(raw)
            except RldsViolation:
                continue
            yield from self._candidate(raw)


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


class BuildPromptPools(beam.PTransform):
    """{"work": WorkItems, "returns": pass 1's EpisodeReturns} -> (TaskKey, PromptPool) per
    task: the pools of windows from every valid episode, tokenizing only the chosen ones
    (and, for a task where a chosen one gives no candidate, the rest of the task)."""

    def __init__(
        self, spec: DatasetSpec, *, tokenizer: TokenizerConfig, sequencing: SequenceConfig, capacity: int
    ) -> None:
        super().__init__()
        self._spec, self._tokenizer, self._sequencing, self._capacity = spec, tokenizer, sequencing, capacity

    def _windows(self, *, rest: bool) -> PromptWindowsFn:
        return_fn = functools.partial(episode_return, spec=self._spec)
        return PromptWindowsFn(
            self._spec, self._tokenizer, sequence=self._sequencing, return_fn=return_fn, rest=rest
        )

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> beam.PCollection:
        work, returns = inputs["work"], inputs["returns"]
        selections = returns | "PromptCandidateKeys" >> PromptCandidateKeys(
            self._capacity, seed=self._sequencing.seed
        )
        chosen = work | "PromptWindows" >> beam.ParDo(self._windows(rest=False), beam.pvalue.AsDict(selections))
        # At most K task keys per task: counting them needs no grouping stage of its own.
        found = chosen | "ChosenTasks" >> beam.Map(lambda candidate: candidate[0])
        short = (
            work.pipeline
            | "ShortTrigger" >> beam.Create([None])
            | "ShortPools" >> beam.FlatMap(
                lambda _, selected, tasks: short_selections(selected, collections.Counter(tasks)).items(),
                beam.pvalue.AsDict(selections),
                beam.pvalue.AsList(found),
            )
        )
        rest = work | "PromptWindowsRest" >> beam.ParDo(self._windows(rest=True), beam.pvalue.AsDict(short))
        return (chosen, rest) | "AllCandidates" >> beam.Flatten() | "PromptPools" >> PromptPools(self._capacity)
