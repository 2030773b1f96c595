"""Per-task statistics for auditors (spec section 4): stats/stats.{parquet,json}, stats/episodes.parquet.

`task_statistics` (pure) turns everything the job knows about one task (its threshold,
the return of every valid episode, the filter's decisions, the episodes kept and
tokenized, the rejects) into one stats record and the task's per-episode audit table.
It checks the books: per task, read = kept + dropped + rejected, and an episode the
filter kept is either tokenized (a `KeptEpisode`) or rejected, never lost; a tokenized
episode that a later stage (sequencing) rejects counts as rejected. When the job's
sequencing counts are given, every kept episode was sequenced exactly once: the summed
`SequenceCounts.episodes` equals the kept count, and its rows and tokens become the
sequencing columns (a one-episode task shows prompted 0, prompts_unavailable > 0).
`TaskStatistics` is the Beam stage: it groups compact per-episode tuples (never
episodes) per task, computes the records and writes the files with fsspec.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam

from audit.report import write_report
from formats.stats_files import stats_records, write_statistics
from pipeline.sequence_episodes import SumSequenceCounts
from schemas import output as out
from transforms.books import (
    DecisionRow,
    KeptRow,
    RejectRow,
    ReturnRow,
    SequenceCounts,
    StatsOptions,
    task_statistics,
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
    return key.task_key, (key.sort_key(), key.episode_id, float(element.value), key.source_file)


def _decision_row(element: FilterDecision) -> tuple[TaskKey, DecisionRow]:
    return element.key.task_key, (element.key.episode_id, bool(element.kept), element.reason)


def _kept_row(element: KeptEpisode) -> tuple[TaskKey, KeptRow]:
    return element.key.task_key, (
        element.key.episode_id,
        float(element.value),
        int(element.timesteps),
        int(element.tokens),
    )


def _reject_row(element: Reject) -> tuple[TaskKey, RejectRow]:
    return (element.dataset, element.task), (
        element.episode_id,
        element.source_file,
        element.reason,
        element.field,
        element.detail,
    )


class _TaskStatisticsFn(beam.DoFn):
    def __init__(self, options: StatsOptions) -> None:
        self._options = options

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
            beam.metrics.Metrics.counter(COUNTER_NAMESPACE, f"{task[0]}/{task[1]}/{name}").inc(
                record[name]
            )
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
