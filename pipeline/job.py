"""The Gato data job: `build_pipeline` composes the three passes, `run_job` plans and runs them.

`pipeline/passes.py` holds the composites (`Pass1`, `Pass2`, `Outputs`); this module
adds them to a Beam pipeline, checks everything it can before any worker starts
(planning, the text model, the output directory) and summarizes the counters per task.

One writer per output directory: `run_job` claims it (`formats.claim.take_claim`; a
second job is refused), prepares it (`formats.output_dir.prepare_output_dir`) and runs the
pipeline on its staging directory `<output_dir>/_staging/<run id>`; the manifest step
publishes the output into `<output_dir>` (`formats/publish.py`). When the job fails, its
staging directory is removed and an older finished output stays as it was; the claim is
released either way.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from formats.claim import release_claim, take_claim
from formats.files import output_filesystem
from formats.layout import remove_empty_dirs, staging_dir
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
from pipeline.runner import (
    finish_dry_run,
    frozen_heap,
    is_dry_run,
    is_local,
    make_pipeline,
    require_runner_installed,
    workers_see_local_disk,
)
from pipeline.vl_passes import VLJobParts, build_vl_pipeline
from planning.options import JobOptions
from planning.plan import plan_work
from planning.text_model import (
    DEFAULT_SENTENCEPIECE_MODEL,
    SENTENCEPIECE_SHA256,
    needs_text_model,
    text_model_digest,
)
from planning.vl_plan import VLPlan, plan_vl_work
from planning.work import Plan
from planning.worker_paths import refuse_launcher_paths, require_storage
from schemas.output import STAGING_DIR
from transforms.text import SentencePieceTokenizer

log = logging.getLogger(__name__)
T = TypeVar("T")
# What an output directory that cannot be created or written fails with (a file, a read-only
# disk, no permission): start-up errors the user fixes by choosing another --output_dir.
_UNWRITABLE = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS})


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
    `overwrite`, an output directory another job claims or holding files not ours, and for
    every start-up check (with a runner other than the local one: a path its workers open
    that is on this machine, `planning/worker_paths.py`); `formats.files.NoSpaceLeftError`
    (maybe wrapped by Beam) for a full disk. The objects alive before the job are left out
    of garbage collection while it runs (`frozen_heap`).
    """
    with frozen_heap():
        return _run_job(options, beam_args=beam_args)


def _run_job(options: JobOptions, *, beam_args: Sequence[str]) -> dict[str, Any]:
    beam_options = PipelineOptions(list(beam_args))
    check_runner(options, beam_options)
    if options.is_vision_language:
        options, build, plan = plan_vision_language(options)
    else:
        plan = plan_work(
            options.dataset, data_dir=options.data_dir, tasks=options.tasks, rlds_spec=options.rlds_spec
        )
        options, extra_config, _ = with_text_model(options, needed=needs_text_model(plan))
        build = functools.partial(build_pipeline, plan=plan, extra_config=extra_config)
    log.info(
        "dataset %s: %d tasks, %d input files -> %s",
        options.dataset, len(plan.tasks), len(plan.work_items), options.output_dir,
    )
    claim = unwritable_as_value_error(take_claim, options.output_dir)
    try:
        target = unwritable_as_value_error(
            prepare_output_dir, options.output_dir, overwrite=options.overwrite, run_id=claim.run_id
        )
        started = time.monotonic()
        log.info("running the job (%s)", beam_options.view_as(StandardOptions).runner)
        pipeline = make_pipeline(beam_args)
        staged = dataclasses.replace(options, output_dir=target)
        build(pipeline, staged)
        result = pipeline.run()
        result.wait_until_finish()
        if is_dry_run(beam_options):  # built, not run: nothing of this run may stay
            job_file = finish_dry_run(result, beam_options)
            discard_run(options.output_dir, claim.run_id)
    except BaseException:
        discard_run(options.output_dir, claim.run_id)
        raise
    finally:
        release_claim(options.output_dir, claim.run_id)
    if is_dry_run(beam_options):
        log.info("dry run: the job was built, not run (%s)",
                 f"files staged, job description in {job_file}" if job_file else "no --dataflow_job_file")
        return {}
    summary = counter_summary(result)
    log.info("finished in %.1f s", time.monotonic() - started)
    log.debug("counters per task:\n%s", format_summary(summary))
    return summary


def with_text_model(options: JobOptions, *, needed: bool) -> tuple[JobOptions, dict[str, Any], int | None]:
    """Where text is tokenized: the options with the model in force (the bundled one by
    default), opened once here so a bad model fails now and not on a worker; the model's
    sha256 for the configuration; its end-of-sequence id."""
    if not needed:
        return options, {}, None
    if not options.sentencepiece_model:
        options = dataclasses.replace(options, sentencepiece_model=DEFAULT_SENTENCEPIECE_MODEL)
        log.info("no --sentencepiece_model: text fields use the bundled model %s", DEFAULT_SENTENCEPIECE_MODEL)
    tokenizer = SentencePieceTokenizer.from_path(options.sentencepiece_model)
    return options, {SENTENCEPIECE_SHA256: text_model_digest(options.sentencepiece_model)}, tokenizer.eos_id


def plan_vision_language(options: JobOptions) -> tuple[JobOptions, Callable[[beam.Pipeline, JobOptions], None], VLPlan]:
    """Plans a vision-language or text job (`planning/vl_plan.py`): the options with the
    text model in force, the function that builds its pipeline, and the plan. The resolved
    format and field mapping, S and E enter the configuration (and its hash)."""
    plan = plan_vl_work(
        options.dataset, data_dir=options.data_dir, format=options.format, fields=options.fields,
        vl_spec=options.vl_spec,
    )
    options, extra_config, eos_id = with_text_model(options, needed=True)
    extra_config.update(vl_format=plan.format, vl_fields=plan.mapping.to_metadata(), end_of_sequence_id=eos_id)

    def build(pipeline: beam.Pipeline, staged: JobOptions) -> None:
        build_vl_pipeline(pipeline, VLJobParts(options=staged, plan=plan, eos_id=eos_id, extra_config=extra_config))

    return options, build, plan


def unwritable_as_value_error(step: Callable[..., T], output_dir: str, **kwargs: Any) -> T:
    """`step(output_dir, **kwargs)`, with an output directory that cannot be created or
    written (a file, read-only) raised as a one-line ValueError naming it."""
    try:
        return step(output_dir, **kwargs)
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
        raise ValueError(
            f"--output_dir={output_dir}: cannot write an output directory there "
            f"({e.strerror}: {e.filename or output_dir}); give a directory you can write"
        ) from e


def check_runner(options: JobOptions, beam_options: PipelineOptions) -> None:
    """Start-up checks that depend on where the job runs (ValueError): a runner whose
    workers may run on other machines cannot see this machine's disk
    (`planning/worker_paths.py`; `pipeline.runner.workers_see_local_disk` tells); the local runner
    ignores `--dry_run` (only Dataflow's honours it) and would run the whole job; a runner or a
    storage whose libraries are not installed (the extra to install is named)."""
    require_runner_installed(beam_options)
    require_storage(options)
    if not workers_see_local_disk(beam_options):
        refuse_launcher_paths(options, runner=str(beam_options.view_as(StandardOptions).runner))
    if is_local(beam_options) and is_dry_run(beam_options):
        raise ValueError("--dry_run=True: the local runner ignores it and would run the whole job; "
                         "only a remote runner (DataflowRunner) builds a job without running it")


def discard_run(output_dir: str, run_id: str) -> None:
    """Removes what run `run_id` staged (its own directory only); best effort, after a failure."""
    fs, root = output_filesystem(output_dir)
    _, stage = output_filesystem(staging_dir(output_dir, run_id))
    try:
        if fs.exists(stage):
            fs.rm(stage, recursive=True)
        remove_empty_dirs(fs, root, (STAGING_DIR,))
    except OSError as e:  # the failure that brought us here matters more
        log.warning("could not remove the staging directory %s: %s", stage, e)


def counter_summary(result: beam.runners.runner.PipelineResult) -> dict[str, dict[str, int]]:
    """{"<dataset>/<task>": {counter: value}} from the job's Beam counters; empty (and said in
    the log) for a runner that reports none, such as Dataflow's `--dry_run=True`."""
    try:
        metrics = result.metrics()
    except NotImplementedError:
        log.info("the runner reports no metrics: no counters to summarize")
        return {}
    summary: dict[str, dict[str, int]] = {}
    for counter in metrics.query()["counters"]:
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
