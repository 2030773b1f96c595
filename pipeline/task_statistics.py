"""The statistics stage (spec section 4): per-task books -> stats/stats.{parquet,json},
stats/episodes.parquet and the HTML report.

No step holds more than one task's per-episode figures, and none holds them as Python
objects per episode:
- each kind of per-episode element (returns, filter decisions, kept episodes) is combined
  per task into compact columns (`transforms.book_columns`; Beam lifts the combiner, so
  partial columns are built where the elements are made and only they are shuffled);
- "GroupPerTask" joins, per task, those columns with its threshold, rejects and summed
  sequencing counts; "PerTask" checks the books (`transforms.books.check_columns`: read =
  kept + dropped + rejected, every kept episode tokenized or rejected, sequenced exactly
  once when sequencing counts are given), summarizes them and writes the task's
  per-episode table, a row group at a time, as a temporary part
  (`formats.stats_files.write_episodes_part`);
- only the small (stats record, part path) pairs are gathered: "WriteStats" writes the
  files, copying the parts a row group at a time into episodes.parquet, then the report,
  and removes the parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import apache_beam as beam

from audit.report import write_report
from formats.stats_files import (
    episodes_batches,
    remove_episodes_parts,
    stats_records,
    write_episodes_part,
    write_statistics,
)
from pipeline.counters import TaskCounters
from pipeline.sequence_episodes import SumSequenceCounts
from schemas import output as out
from transforms.book_columns import DecisionColumns, KeptColumns, ReturnColumns
from transforms.book_summary import summarize_books
from transforms.books import (
    DecisionRow,
    KeptRow,
    RejectRow,
    ReturnRow,
    SequenceCounts,
    StatsOptions,
    check_columns,
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


class CollectColumns(beam.CombineFn):
    """Rows of one kind -> one task's columns (`ReturnColumns`, `DecisionColumns` or
    `KeptColumns`): about 150 bytes an episode at most, whatever Python objects came in."""

    def __init__(self, columns: Callable[[], Any]) -> None:
        self._columns = columns

    def create_accumulator(self) -> Any:
        return self._columns()

    def add_input(self, accumulator: Any, row: tuple[Any, ...]) -> Any:
        accumulator.add(*row)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        # Into the first (Beam allows it): no copy of the largest part.
        remaining = iter(accumulators)
        merged = next(remaining, None)
        merged = self._columns() if merged is None else merged
        for accumulator in remaining:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: Any) -> Any:
        return accumulator


def _merged(parts: Iterable[Any], columns: Callable[[], Any]) -> Any:
    """A task's columns of one kind (none arrive for a kind the task has no row of)."""
    return CollectColumns(columns).merge_accumulators(parts)


class _TaskStatisticsFn(beam.DoFn):
    def __init__(self, output_dir: str, options: StatsOptions, *, sequenced: bool) -> None:
        self._output_dir = output_dir
        self._options = options
        self._sequenced = sequenced
        self._attempt = ""

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def start_bundle(self) -> None:
        self._attempt = uuid.uuid4().hex  # a retried bundle writes its parts elsewhere

    def process(self, grouped: tuple[TaskKey, dict[str, list[Any]]]) -> Iterable[tuple[dict[str, Any], str]]:
        task, parts = grouped
        thresholds = list(parts[THRESHOLDS])
        if len(thresholds) > 1:
            raise ValueError(f"task {task}: {len(thresholds)} thresholds, expected one")
        # Not sequenced: columns 0; sequenced but no count for a task: nothing of it was
        # sequenced, which the books check against its kept count.
        sequences = sum(parts.get(SEQUENCE_COUNTS, ()), start=SequenceCounts()) if self._sequenced else None
        books = check_columns(
            task,
            threshold=thresholds[0] if thresholds else None,
            returns=_merged(parts[RETURNS], ReturnColumns),
            decisions=_merged(parts[DECISIONS], DecisionColumns),
            kept=_merged(parts[KEPT], KeptColumns),
            rejects=parts[REJECTS],
            sequences=sequences,
        )
        record = summarize_books(books, options=self._options)
        part = write_episodes_part(self._output_dir, episodes_batches(books), task=task, attempt=self._attempt)
        for name in (out.ST_EPISODES_READ, out.ST_KEPT, out.ST_DROPPED, out.ST_REJECTED):
            self._counters.inc(task, name, record[name])
        yield record, part


class ComputeTaskStatistics(beam.PTransform):
    """dict of PCollections (keys THRESHOLDS, RETURNS, DECISIONS, KEPT, REJECTS and the
    optional SEQUENCE_COUNTS) -> PCollection[(stats record, path of its per-episode part)],
    one per task; the parts are written under `output_dir`."""

    def __init__(self, output_dir: str, options: StatsOptions = StatsOptions()) -> None:
        super().__init__()
        self._output_dir = output_dir
        self._options = options

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> beam.PCollection:
        grouped = {
            THRESHOLDS: inputs[THRESHOLDS],
            RETURNS: inputs[RETURNS] | "KeyReturns" >> beam.Map(_return_row)
            | "ReturnColumns" >> beam.CombinePerKey(CollectColumns(ReturnColumns)),
            DECISIONS: inputs[DECISIONS] | "KeyDecisions" >> beam.Map(_decision_row)
            | "DecisionColumns" >> beam.CombinePerKey(CollectColumns(DecisionColumns)),
            KEPT: inputs[KEPT] | "KeyKept" >> beam.Map(_kept_row)
            | "KeptColumns" >> beam.CombinePerKey(CollectColumns(KeptColumns)),
            REJECTS: inputs[REJECTS] | "KeyRejects" >> beam.Map(_reject_row),
        }
        sequenced = SEQUENCE_COUNTS in inputs
        if sequenced:
            # Summed before grouping (combiner lifting): one small record per task, not one per episode.
            grouped[SEQUENCE_COUNTS] = inputs[SEQUENCE_COUNTS] | "SumSequenceCounts" >> SumSequenceCounts()
        return (
            grouped
            | "GroupPerTask" >> beam.CoGroupByKey()
            | "PerTask" >> beam.ParDo(_TaskStatisticsFn(self._output_dir, self._options, sequenced=sequenced))
        )


def _write_files(output_dir: str, results: list[tuple[Mapping[str, Any], str]], *, report: bool) -> dict[str, str]:
    """The statistics files, then the HTML report from the same records; the parts go last."""
    paths = write_statistics(output_dir, results)
    if report:
        paths[out.M_STATS_REPORT] = write_report(output_dir, stats_records(results))
    remove_episodes_parts(output_dir)
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
            | "Compute" >> ComputeTaskStatistics(output_dir, self._options)
            | "AllTasks" >> beam.combiners.ToList()  # small: one record and one path per task
            | "WriteStats" >> beam.Map(lambda results: _write_files(output_dir, results, report=report))
        )
