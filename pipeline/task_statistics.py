"""The statistics stage (spec section 4): per-task books -> stats/stats.{parquet,json},
stats/episodes.parquet and the HTML report.

`ComputeTaskStatistics` keys compact per-episode rows (`transforms.books` row types, never
episodes) by task, groups them and checks and summarizes each task's books
(`formats.stats_files.task_statistics`: read = kept + dropped + rejected, every kept episode
tokenized or rejected, sequenced exactly once when sequencing counts are given).
`TaskStatistics` then writes the files (`formats.stats_files`) and the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam

from audit.report import write_report
from formats.stats_files import stats_records, task_statistics, write_statistics
from pipeline.counters import TaskCounters
from pipeline.sequence_episodes import SumSequenceCounts
from schemas import output as out
from transforms.books import (
    DecisionRow,
    KeptRow,
    RejectRow,
    ReturnRow,
    SequenceCounts,
    StatsOptions,
)
from transforms.episode import (
    EpisodeReturn,
    FilterDecision,
    KeptEpisode,
    Reject,
    TaskKey,
)

COUNTER_NAMESPACE = "gato.stats"
# Keys of the dict of PCollections `TaskStatistics` takes.
THRESHOLDS = "thresholds"  # (TaskKey, TaskThreshold)
RETURNS = "returns"  # EpisodeReturn, every valid episode (pass 1)
DECISIONS = "decisions"  # FilterDecision, every episode that reached the filter
KEPT = "kept"  # KeptEpisode: kept by the filter and tokenized
REJECTS = "rejects"  # Reject, from any stage
SEQUENCE_COUNTS = "sequence_counts"  # optional: (TaskKey, SequenceCounts), one per sequenced episode


def _return_row(element: EpisodeReturn) -> tuple[TaskKey, ReturnRow]:
    key = element.key
    return key.task_key, ReturnRow(
        sort_key=key.sort_key(),
        episode_id=key.episode_id,
        value=float(element.value),
        source_file=key.source_file,
    )


def _decision_row(element: FilterDecision) -> tuple[TaskKey, DecisionRow]:
    return element.key.task_key, DecisionRow(
        episode_id=element.key.episode_id, kept=bool(element.kept), reason=element.reason
    )


def _kept_row(element: KeptEpisode) -> tuple[TaskKey, KeptRow]:
    return element.key.task_key, KeptRow(
        episode_id=element.key.episode_id,
        value=float(element.value),
        timesteps=int(element.timesteps),
        tokens=int(element.tokens),
    )


def _reject_row(element: Reject) -> tuple[TaskKey, RejectRow]:
    return (element.dataset, element.task), RejectRow(
        episode_id=element.episode_id,
        source_file=element.source_file,
        reason=element.reason,
        field=element.field,
        detail=element.detail,
    )


class _TaskStatisticsFn(beam.DoFn):
    def __init__(self, options: StatsOptions) -> None:
        self._options = options

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, grouped: tuple[TaskKey, dict[str, list[Any]]]) -> Iterable[Any]:
        task, parts = grouped
        thresholds = list(parts[THRESHOLDS])
        if len(thresholds) > 1:
            raise ValueError(f"task {task}: {len(thresholds)} thresholds, expected one")
        # Absent key: the job did not sequence (columns 0); present but empty for a task:
        # nothing of it was sequenced, which the books check against its kept count.
        sequences = (
            sum(parts[SEQUENCE_COUNTS], start=SequenceCounts()) if SEQUENCE_COUNTS in parts else None
        )
        record, episodes = task_statistics(
            task,
            threshold=thresholds[0] if thresholds else None,
            returns=parts[RETURNS],
            decisions=parts[DECISIONS],
            kept=parts[KEPT],
            rejects=parts[REJECTS],
            options=self._options,
            sequences=sequences,
        )
        for name in (out.ST_EPISODES_READ, out.ST_KEPT, out.ST_DROPPED, out.ST_REJECTED):
            self._counters.inc(task, name, record[name])
        yield record, episodes


class ComputeTaskStatistics(beam.PTransform):
    """dict of PCollections (keys THRESHOLDS, RETURNS, DECISIONS, KEPT, REJECTS and the
    optional SEQUENCE_COUNTS) -> PCollection[(stats record, per-episode pa.Table)], one per task."""

    def __init__(self, options: StatsOptions = StatsOptions()) -> None:
        super().__init__()
        self._options = options

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> beam.PCollection:
        keyed = {
            THRESHOLDS: inputs[THRESHOLDS],
            RETURNS: inputs[RETURNS] | "KeyReturns" >> beam.Map(_return_row),
            DECISIONS: inputs[DECISIONS] | "KeyDecisions" >> beam.Map(_decision_row),
            KEPT: inputs[KEPT] | "KeyKept" >> beam.Map(_kept_row),
            REJECTS: inputs[REJECTS] | "KeyRejects" >> beam.Map(_reject_row),
        }
        if SEQUENCE_COUNTS in inputs:
            # Summed before grouping (combiner lifting): one small record per task, not one per episode.
            keyed[SEQUENCE_COUNTS] = inputs[SEQUENCE_COUNTS] | "SumSequenceCounts" >> SumSequenceCounts()
        return (
            keyed
            | "GroupPerTask" >> beam.CoGroupByKey()
            | "PerTask" >> beam.ParDo(_TaskStatisticsFn(self._options))
        )


def _write_files(output_dir: str, results: list[tuple[Mapping[str, Any], Any]], *, report: bool) -> dict[str, str]:
    """The statistics files, then the HTML report from the same records."""
    paths = write_statistics(output_dir, results)
    if report:
        paths[out.M_STATS_REPORT] = write_report(output_dir, stats_records(results))
    return paths


class TaskStatistics(beam.PTransform):
    """Computes and writes the statistics; output: one dict of written relative paths
    (`M_STATS_PARQUET`, `M_STATS_JSON`, `M_STATS_EPISODES`, `M_STATS_REPORT`) for the manifest.

    Apply to a dict of PCollections with keys THRESHOLDS, RETURNS, DECISIONS, KEPT, REJECTS
    and optionally SEQUENCE_COUNTS (without it the sequencing columns are 0).
    """

    def __init__(self, output_dir: str, *, options: StatsOptions = StatsOptions(), report: bool = True) -> None:
        super().__init__()
        self._output_dir = output_dir
        self._options = options
        self._report = report

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> beam.PCollection:
        output_dir, report = self._output_dir, self._report
        return (
            inputs
            | "Compute" >> ComputeTaskStatistics(self._options)
            | "AllTasks" >> beam.combiners.ToList()
            | "WriteStats" >> beam.Map(lambda results: _write_files(output_dir, results, report=report))
        )
