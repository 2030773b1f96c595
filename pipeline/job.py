"""The Gato data job: every stage composed in one function (`build_pipeline`).

Two passes read the same TFDS shards (docs/ARCHITECTURE.md). Pass 1 computes each
task's returns (a light read of flags and rewards), expert return and threshold, and a
bounded pool of prompt windows (decoding only the episodes the pool can keep);
pass 2 validates, filters, tokenizes, sequences and writes, one episode at a time, with
pass 1's small results as side inputs. The manifest is written last, from the finalized
shard lists and the statistics, so an output without `manifest.json` is unfinished.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam

from formats.manifest import build_manifest, write_manifest
from formats.output_dir import prepare_output_dir
from formats.parquet_shards import WriteOptions, sequence_schema
from pipeline import task_statistics as stats_stage
from pipeline.filter_episodes import ExpertThresholds, FilterEpisodes
from pipeline.prompt_pools import prompt_pools
from pipeline.read_episodes import ReadEpisodes, ReadReturns
from pipeline.runner import make_pipeline
from pipeline.sequence_episodes import COUNTS_TAG, SequenceEpisodes
from pipeline.sequence_episodes import REJECTS_TAG as SEQUENCE_REJECTS
from pipeline.tokenize_episodes import TokenizeEpisodes
from pipeline.validate_episodes import ValidateEpisodes
from pipeline.write_shards import FinalizeShards, WriteRejects, WriteShards
from planning.options import JobOptions
from planning.plan import plan_work
from planning.text_model import (
    DEFAULT_SENTENCEPIECE_MODEL,
    SENTENCEPIECE_SHA256,
    needs_text_model,
    text_model_digest,
)
from planning.work import Plan, all_fields
from schemas.output import REJECTS_DIR, SEQUENCES_DIR
from schemas.vocab import get_layout
from transforms.books import StatsOptions
from transforms.rlds_rules import episode_return
from transforms.sequence import SequenceConfig
from transforms.task_tokenizer import TokenizerConfig
from transforms.text import SentencePieceTokenizer

log = logging.getLogger(__name__)


def build_pipeline(
    root: beam.Pipeline,
    options: JobOptions,
    *,
    plan: Plan,
    extra_config: Mapping[str, Any] | None = None,
) -> None:
    """Adds the whole job to `root`: read twice, filter, tokenize, sequence, write, stats, manifest.

    `extra_config`: run-time facts that determine the content (the text model's sha256),
    recorded in the manifest's configuration and hash.
    """
    spec = plan.dataset
    layout = get_layout(options.layout)
    return_fn = functools.partial(episode_return, spec=spec)
    tokenizer = TokenizerConfig(
        task_fields=plan.task_fields,
        layout=options.layout,
        sentencepiece_model=options.sentencepiece_model,
        local_position_table=spec.local_position_table,
        max_timestep_tokens=options.sequence_length,
    )
    sequencing = SequenceConfig(
        sequence_length=options.sequence_length,
        prompt_fraction=options.prompt_fraction,
        prompt_budget=options.effective_prompt_tokens,
        seed=options.seed,
        layout=layout,
    )
    writing = WriteOptions(output_dir=options.output_dir, rows_per_shard=options.rows_per_shard)
    fields = {spec.name: all_fields(plan)}

    # Each read spreads the work items itself (a Reshuffle, which also keeps the passes in
    # separate fused stages), so Create need not reshuffle them first.
    work = root | "WorkItems" >> beam.Create(plan.work_items, reshuffle=False)

    # Pass 1: returns -> thresholds, and the prompt pools. The returns come from a light
    # read (flags, rewards, episode fields); since a pool keeps the top K by return, only
    # the chosen episodes' records are decoded in full for their windows, and a task where
    # one of them gives no candidate takes the others' windows too, so the pools equal
    # those of windows from every episode. Pass 2 reports every reject.
    returns = work | "ReadReturns" >> ReadReturns(spec, namespace="gato.read_pass1")
    thresholds = returns | "ExpertReturn" >> ExpertThresholds(
        fraction=options.filter_fraction, cap=options.window_cap
    )
    pools = prompt_pools(work, returns, spec=spec, tokenizer=tokenizer, sequencing=sequencing,
                         capacity=options.prompt_pool_size)

    # Pass 2: one episode at a time from its input shard to an output shard.
    read2 = work | "Read" >> ReadEpisodes(spec, strict=options.strict)
    valid2 = read2.episodes | "Validate" >> ValidateEpisodes(strict=options.strict)
    filtered = valid2.valid | "Filter" >> FilterEpisodes(
        beam.pvalue.AsDict(thresholds), return_fn=return_fn, no_filter=options.no_filter
    )
    tokenized = filtered.kept | "Tokenize" >> TokenizeEpisodes(
        tokenizer, return_fn=return_fn, strict=options.strict
    )
    sequenced = tokenized.tokenized | "Sequence" >> beam.ParDo(
        SequenceEpisodes(sequencing, strict=options.strict),
        beam.pvalue.AsDict(pools),
        beam.pvalue.AsDict(thresholds),
    ).with_outputs(SEQUENCE_REJECTS, COUNTS_TAG, main="sequences")
    shards = (
        sequenced.sequences
        | "Write" >> beam.ParDo(
            WriteShards(writing, sequence_schema(layout=layout, fields=fields, sequence_length=options.sequence_length))
        )
        | "FinalizeShards" >> FinalizeShards(options.output_dir, kind=SEQUENCES_DIR)
    )

    rejects = (
        read2.rejects,
        valid2.rejects,
        tokenized.rejects,
        sequenced[SEQUENCE_REJECTS],
    ) | "AllRejects" >> beam.Flatten()
    reject_shards = (
        rejects
        | "WriteRejects" >> WriteRejects(writing)
        | "FinalizeRejects" >> FinalizeShards(options.output_dir, kind=REJECTS_DIR)
    )

    stats_paths = {
        stats_stage.THRESHOLDS: thresholds,
        stats_stage.RETURNS: returns,
        stats_stage.DECISIONS: filtered.decisions,
        stats_stage.KEPT: tokenized.kept,
        stats_stage.REJECTS: rejects,
        stats_stage.SEQUENCE_COUNTS: sequenced[COUNTS_TAG],
    } | "Stats" >> stats_stage.TaskStatistics(
        options.output_dir,
        options=StatsOptions(
            fraction=options.filter_fraction, cap=options.window_cap, no_filter=options.no_filter
        ),
    )

    manifest = functools.partial(
        _write_manifest,
        options=options,
        fields=fields,
        dataset_weights={spec.name: spec.sample_weight},
        extra_config=dict(extra_config or {}),
        field_shapes={spec.name: plan.field_shapes},
    )
    _ = (
        root
        | "ManifestTrigger" >> beam.Create([None])
        | "Manifest" >> beam.Map(
            manifest,
            shards=beam.pvalue.AsSingleton(shards),
            rejects=beam.pvalue.AsSingleton(reject_shards),
            stats=beam.pvalue.AsSingleton(stats_paths),
        )
    )


def _write_manifest(
    _: None,
    *,
    shards: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]],
    stats: Mapping[str, str],
    options: JobOptions,
    fields: Mapping[str, Mapping[str, Any]],
    dataset_weights: Mapping[str, float | None],
    extra_config: Mapping[str, Any],
    field_shapes: Mapping[str, Mapping[str, Mapping[str, Sequence[int | None]]]],
) -> str:
    manifest = build_manifest(
        config={**options.to_config(), **extra_config},
        layout=get_layout(options.layout),
        fields=fields,
        sequence_length=options.sequence_length,
        shards=shards,
        rejects=rejects,
        stats=stats,
        dataset_weights=dataset_weights,
        config_digest=options.config_hash(extra_config),
        field_shapes=field_shapes,
    )
    return write_manifest(options.output_dir, manifest)


def run_job(options: JobOptions, *, beam_args: Sequence[str] = ("--runner=DirectRunner",)) -> dict[str, Any]:
    """Plans (failing fast on bad names, paths or features), runs the job, and logs a summary.

    Returns the per-task counter summary. Raises ValueError for a finished output without
    `overwrite`, and for every start-up check.
    """
    plan = plan_work(
        options.dataset, data_dir=options.data_dir, tasks=options.tasks, rlds_spec=options.rlds_spec
    )
    extra_config: dict[str, Any] = {}
    if needs_text_model(plan):
        if not options.sentencepiece_model:
            options = dataclasses.replace(options, sentencepiece_model=DEFAULT_SENTENCEPIECE_MODEL)
            log.info(
                "no --sentencepiece_model: text fields use the bundled model %s", DEFAULT_SENTENCEPIECE_MODEL
            )
        SentencePieceTokenizer.from_path(options.sentencepiece_model)  # fail now, not on a worker
        extra_config[SENTENCEPIECE_SHA256] = text_model_digest(options.sentencepiece_model)
    log.info(
        "dataset %s: %d tasks, %d input shards -> %s",
        plan.dataset.name, len(plan.tasks), len(plan.work_items), options.output_dir,
    )
    prepare_output_dir(options.output_dir, overwrite=options.overwrite)
    started = time.monotonic()
    pipeline = make_pipeline(beam_args)
    build_pipeline(pipeline, options, plan=plan, extra_config=extra_config)
    result = pipeline.run()
    result.wait_until_finish()
    summary = counter_summary(result)
    log.info("finished in %.1f s; per task:\n%s", time.monotonic() - started, format_summary(summary))
    return summary


def counter_summary(result: beam.runners.runner.PipelineResult) -> dict[str, dict[str, int]]:
    """{"<dataset>/<task>": {counter: value}} from the job's Beam counters."""
    summary: dict[str, dict[str, int]] = {}
    for counter in result.metrics().query()["counters"]:
        name = counter.key.metric.name
        task, _, what = name.rpartition("/")
        if not task:
            continue
        stage = counter.key.metric.namespace.removeprefix("gato.")
        value = counter.committed if counter.committed is not None else counter.attempted
        per_task = summary.setdefault(task, {})
        per_task[f"{stage}.{what}"] = per_task.get(f"{stage}.{what}", 0) + int(value or 0)
    return summary


def format_summary(summary: Mapping[str, Mapping[str, int]]) -> str:
    lines = []
    for task in sorted(summary):
        counts = ", ".join(f"{k}={v}" for k, v in sorted(summary[task].items()))
        lines.append(f"  {task}: {counts}")
    return "\n".join(lines) or "  (no counters)"
