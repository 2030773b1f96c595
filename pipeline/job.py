"""The Gato data job: `build_pipeline` composes the three passes, `run_job` plans and runs them.

`pipeline/passes.py` holds the composites (`Pass1`, `Pass2`, `Outputs`); this module
adds them to a Beam pipeline, checks everything it can before any worker starts
(planning, the text model, the output directory) and summarizes the counters per task.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam

from formats.output_dir import prepare_output_dir
from pipeline.passes import (
    POOLS,
    RETURNS,
    THRESHOLDS,
    WORK,
    JobParts,
    Outputs,
    Pass1,
    Pass2,
)
from pipeline.runner import make_pipeline
from planning.options import JobOptions
from planning.plan import plan_work
from planning.text_model import (
    DEFAULT_SENTENCEPIECE_MODEL,
    SENTENCEPIECE_SHA256,
    needs_text_model,
    text_model_digest,
)
from planning.work import Plan
from transforms.text import SentencePieceTokenizer

log = logging.getLogger(__name__)


def build_pipeline(
    root: beam.Pipeline,
    options: JobOptions,
    *,
    plan: Plan,
    extra_config: Mapping[str, Any] | None = None,
) -> None:
    """Adds the whole job to `root`: pass 1, pass 2, then the outputs (manifest last).

    `extra_config`: run-time facts that determine the content (the text model's sha256),
    recorded in the manifest's configuration and hash.
    """
    parts = JobParts(options=options, plan=plan, extra_config=dict(extra_config or {}))
    # Each read spreads the work items itself (a Reshuffle, which also keeps the passes in
    # separate fused stages), so Create need not reshuffle them first.
    work = root | "WorkItems" >> beam.Create(plan.work_items, reshuffle=False)
    pass1 = work | "Pass1" >> Pass1(parts)
    pass2 = {WORK: work, THRESHOLDS: pass1[THRESHOLDS], POOLS: pass1[POOLS]} | "Pass2" >> Pass2(parts)
    _ = {**pass2, RETURNS: pass1[RETURNS], THRESHOLDS: pass1[THRESHOLDS]} | "Outputs" >> Outputs(parts)


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
