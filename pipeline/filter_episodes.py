"""The Filter stages (spec section 4): one expert-return threshold per task, then keep or drop.

`ExpertThresholds` combines per-episode (sort key, return) pairs, never whole episodes,
into one `TaskThreshold` per task (`transforms.expert_filter` holds all the arithmetic:
W, E, the threshold); `FilterEpisodes` takes them as an `AsDict` side input, keeps or
drops every `RawEpisode` and reports a `FilterDecision` for each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam

from pipeline.counters import TaskCounters
from transforms.episode import EpisodeReturn, RawEpisode, TaskKey
from transforms.expert_filter import (
    DEFAULT_CAP,
    DEFAULT_FRACTION,
    TaskReturns,
    TaskThreshold,
    decide,
    slack,
    window_size,
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
    def __init__(self, return_fn: Callable[[RawEpisode], float], *, no_filter: bool) -> None:
        self._return_fn = return_fn
        self._no_filter = no_filter

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(
        self, episode: RawEpisode, thresholds: dict[TaskKey, TaskThreshold]
    ) -> Iterable[Any]:
        task = episode.key.task_key
        decision = decide(
            episode.key, float(self._return_fn(episode)), thresholds.get(task), no_filter=self._no_filter
        )
        self._counters.inc(task, "kept" if decision.kept else "dropped")
        yield beam.pvalue.TaggedOutput(DECISIONS_TAG, decision)
        if decision.kept:
            yield episode


class FilterEpisodes(beam.PTransform):
    """Keeps the RawEpisodes whose return reaches their task's threshold.

    Main output: kept RawEpisodes. Tagged output `decisions`: a `FilterDecision` for
    every episode. Counters `gato.filter:<dataset>/<task>/kept|dropped`.
    With `no_filter` every episode is kept (reason `no_filter`); thresholds are then
    optional. Apply as `episodes | FilterEpisodes(AsDict(thresholds), return_fn=...)`;
    the result has `.kept` and `.decisions`.
    """

    def __init__(
        self,
        thresholds: Any,
        *,
        return_fn: Callable[[RawEpisode], float],
        no_filter: bool = False,
    ) -> None:
        super().__init__()
        self._thresholds = thresholds
        self._return_fn = return_fn
        self._no_filter = no_filter

    def expand(self, episodes: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return episodes | "KeepOrDrop" >> beam.ParDo(
            _FilterFn(self._return_fn, no_filter=self._no_filter), self._thresholds
        ).with_outputs(DECISIONS_TAG, main="kept")
