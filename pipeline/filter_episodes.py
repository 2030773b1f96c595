"""The Filter stages (spec section 4): one expert-return threshold per task, then keep or drop.

`ExpertThresholds` combines per-episode (sort key, return) pairs, never whole episodes,
into one `TaskThreshold` per task (`transforms.expert_filter` holds all the arithmetic:
W, E, the threshold); pass 1 joins it with its rejects into a `TaskVerdicts` per task
(`pipeline/episode_verdicts.py`). `FilterEpisodes` takes those as an `AsDict` side input
and gives every validated `RawEpisode` pass 1's verdict (`transforms/verdict.py`): a
non-finite return or one of pass 1's rejects becomes a `Reject`, every other episode is
kept or dropped with a `FilterDecision`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam

from pipeline.counters import TaskCounters
from pipeline.rejects import REJECTS_TAG, reject_or_raise
from transforms.episode import EpisodeReturn, RawEpisode, TaskKey
from transforms.expert_filter import (
    DEFAULT_CAP,
    DEFAULT_FRACTION,
    TaskReturns,
    decide,
    slack,
    window_size,
)
from transforms.verdict import (
    NonFiniteReturn,
    TaskVerdicts,
    check_return,
    verdict_reject,
)

DECISIONS_TAG = "decisions"  # tagged output of FilterEpisodes
COUNTER_NAMESPACE = "gato.filter"


class CollectReturns(beam.CombineFn):
    """Accumulates only (sort_key, return) per task into a `TaskReturns`."""

    def create_accumulator(self) -> TaskReturns:
        return TaskReturns()

    def add_input(self, accumulator: TaskReturns, element: tuple[tuple[Any, ...], float]) -> TaskReturns:
        accumulator.add(*element)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[TaskReturns]) -> TaskReturns:
        merged = TaskReturns()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: TaskReturns) -> TaskReturns:
        return accumulator  # the threshold is computed in the keyed step below (needs the task)


def _pair(element: EpisodeReturn) -> tuple[TaskKey, tuple[tuple[Any, ...], float]]:
    return element.key.task_key, (element.key.sort_key(), float(element.value))


class ExpertThresholds(beam.PTransform):
    """PCollection[EpisodeReturn] -> PCollection[(TaskKey, TaskThreshold)], one per task.

    Only (sort_key, return) pairs are combined per task, so memory grows with the
    number of episodes of one task, never with their size. Use the result as
    `beam.pvalue.AsDict(...)` in `FilterEpisodes`.
    """

    def __init__(self, *, fraction: float = DEFAULT_FRACTION, cap: int = DEFAULT_CAP) -> None:
        super().__init__()
        slack(fraction)  # validates early, at pipeline construction
        window_size(1, cap=cap)
        self._fraction = fraction
        self._cap = cap

    def expand(self, returns: beam.PCollection) -> beam.PCollection:
        fraction, cap = self._fraction, self._cap
        return (
            returns
            | "ReturnPairs" >> beam.Map(_pair)
            | "CollectReturns" >> beam.CombinePerKey(CollectReturns())
            | "Threshold"
            >> beam.MapTuple(lambda task, returns: (task, returns.threshold(task, fraction=fraction, cap=cap)))
        )


class _FilterFn(beam.DoFn):
    def __init__(
        self, return_fn: Callable[[RawEpisode], float], *, return_field: str | None, no_filter: bool, strict: bool
    ) -> None:
        self._return_fn = return_fn
        self._return_field = return_field
        self._no_filter = no_filter
        self._strict = strict

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, episode: RawEpisode, verdicts: dict[TaskKey, TaskVerdicts]) -> Iterable[Any]:
        key = episode.key
        task = key.task_key
        found = verdicts.get(task)
        try:
            value = check_return(key, self._return_fn(episode), field=self._return_field)
        except NonFiniteReturn as error:
            yield reject_or_raise(verdict_reject(key, error), strict=self._strict, counters=self._counters, error=error)
            return
        reject = None if found is None else found.reject_of(key)
        if reject is not None:  # pass 1's verdict: it does not tokenize, or its id is not unique
            yield reject_or_raise(reject, strict=self._strict, counters=self._counters)
            return
        decision = decide(key, value, None if found is None else found.expert, no_filter=self._no_filter)
        self._counters.inc(task, "kept" if decision.kept else "dropped")
        yield beam.pvalue.TaggedOutput(DECISIONS_TAG, decision)
        if decision.kept:
            yield episode


class FilterEpisodes(beam.PTransform):
    """Gives every validated RawEpisode its verdict and keeps those whose return reaches
    their task's threshold.

    Main output: kept RawEpisodes. Tagged outputs: `decisions`, a `FilterDecision` for every
    episode kept or dropped; `rejects`, a `Reject` for every episode with a non-finite
    return or rejected by pass 1 (`TaskVerdicts.rejects`), or with `strict` an error.
    Counters `gato.filter:<dataset>/<task>/kept|dropped|rejected`.
    With `no_filter` every usable episode is kept (reason `no_filter`). Apply as
    `episodes | FilterEpisodes(AsDict(verdicts), return_fn=...)`; the result has `.kept`,
    `.decisions` and `[REJECTS_TAG]`.
    """

    def __init__(
        self,
        verdicts: Any,
        *,
        return_fn: Callable[[RawEpisode], float],
        return_field: str | None = None,
        no_filter: bool = False,
        strict: bool = False,
    ) -> None:
        super().__init__()
        self._verdicts = verdicts
        self._fn = _FilterFn(return_fn, return_field=return_field, no_filter=no_filter, strict=strict)

    def expand(self, episodes: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return episodes | "KeepOrDrop" >> beam.ParDo(self._fn, self._verdicts).with_outputs(
            DECISIONS_TAG, REJECTS_TAG, main="kept"
        )
