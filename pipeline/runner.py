"""The Beam pipeline object of a run: local runs go straight to Beam's FnApiRunner.

Beam's `DirectRunner` (Beam 2.77) first tries the Prism runner, which needs a binary
it downloads on first use. Offline that attempt fails, after converting the whole
pipeline to its portable form once more (~0.3 s per run here); online it would run
the job on a runner our tests never ran. What the `DirectRunner` runs after that
attempt is the FnApiRunner, set up as `local_runner` sets it up, so `--runner=DirectRunner`
(the command line's default) means exactly that here: same options
(`--direct_num_workers`, `--direct_running_mode`), no Prism, no network.
Beam's DaskRunner (`--runner=apache_beam.runners.dask.dask_runner.DaskRunner`, or
`--runner=DaskRunner`, which Beam itself does not resolve) is `pipeline/dask_runner.py`'s
subclass, whose translation keeps a multi-output ParDo's outputs apart (Beam's mixes them).
Every other runner (`PortableRunner`, `DataflowRunner`, ...) is Beam's own, unchanged.

`finish_dry_run` completes what Dataflow's `--dry_run=True` leaves out. Beam 2.77 builds the
job (and the package `--setup_file` names) and returns before staging anything, so it never
writes `--dataflow_job_file`. With that flag, the job's files are staged and its description
written as a submission would do it (Beam's `DataflowApplicationClient.create_job`), with
only the call to the Dataflow service left out: the file shows what Dataflow would receive.

`beam_flags` and `unknown_beam_flags` tell Beam's flags from flags nobody defines (Beam
itself only warns and drops those); `require_runner_installed` names the extra a runner's
client libraries come with, before anything is built.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, StandardOptions, TestOptions
from apache_beam.runners.runner import PipelineResult, PipelineRunner

from formats.files import write_bytes

# Names that select Beam's local runner (Beam matches runner names case-insensitively).
LOCAL_RUNNER_NAMES = frozenset({"directrunner", "direct", "fnapirunner"})
# Names that select Beam's DaskRunner, run as `pipeline.dask_runner.DaskRunner`.
DASK_RUNNER_NAMES = frozenset({"apache_beam.runners.dask.dask_runner.daskrunner", "daskrunner", "dask"})
# Runners whose launcher needs an optional extra: last part of the lowercased runner name ->
# (a module the launcher imports to run it, the extra that installs it).
RUNNER_EXTRAS = {
    "dataflowrunner": ("apache_beam.runners.dataflow.internal.apiclient", "dataflow"),
    "dataflow": ("apache_beam.runners.dataflow.internal.apiclient", "dataflow"),
    **{name.rsplit(".", 1)[-1]: ("pipeline.dask_runner", "dask") for name in DASK_RUNNER_NAMES},
}


# Each options object's views, one per class (`ViewCachingOptions`); weak, so that a
# finished pipeline's options go, and outside the object, so that nothing pickles them.
_VIEWS: weakref.WeakKeyDictionary[PipelineOptions, dict[type, Any]] = weakref.WeakKeyDictionary()


class ViewCachingOptions(PipelineOptions):
    """PipelineOptions whose `view_as(cls)` is made once per class.

    Beam asks the pipeline's options for a view (TypeOptions, StandardOptions, ...) about
    four times per transform while building, and each new view parses every flag again
    through argparse: ~750 parses, most of a one-episode job's construction time. A view
    keeps no values of its own (they live in the `_all_options` dict it shares with this
    object, so a write through any view shows in all), which makes one view per class
    equivalent to a new one per call.
    """

    def view_as(self, cls: type[Any]) -> Any:
        views = _VIEWS.setdefault(self, {})
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]


def local_runner(options: PipelineOptions) -> PipelineRunner:
    """Beam's FnApiRunner with the pipeline options passed to its workers, as the
    DirectRunner creates it once it has given up on Prism."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(provision))


def is_local(options: PipelineOptions) -> bool:
    """Whether `options` name no runner or Beam's local one (module doc)."""
    runner = options.view_as(StandardOptions).runner
    return runner is None or (isinstance(runner, str) and runner.lower() in LOCAL_RUNNER_NAMES)


def is_dask(options: PipelineOptions) -> bool:
    """Whether `options` name Beam's DaskRunner (module doc)."""
    runner = options.view_as(StandardOptions).runner
    return isinstance(runner, str) and runner.lower() in DASK_RUNNER_NAMES


# Hosts that are this machine: a cluster or worker pool there sees the launcher's disk.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# Portable environments whose SDK workers run on the job service's machine.
_SAME_HOST_ENVIRONMENTS = frozenset({"LOOPBACK", "PROCESS"})


def _host(address: str | None) -> str | None:
    """The host of `tcp://HOST:PORT`, `HOST:PORT` or `HOST` (None when not given)."""
    if not address:
        return None
    rest = address.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 or rest.startswith("[") else rest


def _is_loopback(host: str | None) -> bool:
    return host is not None and (host in _LOOPBACK_HOSTS or host.startswith("127."))


def workers_see_local_disk(options: PipelineOptions) -> bool:
    """Whether every worker of the run runs on this machine, so local paths work there: the
    local runner; a Dask cluster whose scheduler is on a loopback address (or none given:
    Dask then starts a local one); a portable job service on a loopback address whose SDK
    workers are an EXTERNAL pool on a loopback address, LOOPBACK or PROCESS. Any other
    runner (Dataflow, Flink, Spark, a remote cluster) may run on other machines."""
    if is_local(options):
        return True
    flags = options.get_all_options(retain_unknown_options=True)
    if is_dask(options):
        # Beam's DaskOptions, once registered, store the flag as `address`.
        address = flags.get("dask_client_address") or flags.get("address")
        return not address or _is_loopback(_host(address))
    runner = str(options.view_as(StandardOptions).runner or "").lower()
    if runner in ("portablerunner", "apache_beam.runners.portability.portable_runner.portablerunner"):
        environment = str(flags.get("environment_type") or "").upper()
        same_host = environment in _SAME_HOST_ENVIRONMENTS or (
            environment == "EXTERNAL" and _is_loopback(_host(flags.get("environment_config")))
        )
        return _is_loopback(_host(flags.get("job_endpoint"))) and same_host
    return False


# --- The garbage collector and the job's processes ---------------------------------------
#
# Objects alive before the work (the imported Beam, pyarrow, TFDS and TensorFlow modules:
# millions) are left out of the garbage collector's passes.
#
# Every full pass scanned them all again: ~0.45 s of a one-episode job in the launching
# process, and in each worker process of a multi-process runner a share of every pass
# (8x the Atari-like data on 2 workers: 14.2 s -> 12.6 s).
# - `frozen_heap()`: the launching process, around the whole job (`pipeline/job.py`); the
#   objects go back to the collector when the job ends.
# - `freeze_worker_heap()`: a worker process, from the `setup()` of the stages that read
#   (the first each pass runs), once: what exists then stays out of the collector's passes
#   for the process's life (objects freed by reference counting are freed as ever).
#
# A heap someone else froze already is left as it is (`gc.get_freeze_count()`).


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """While the block runs, the objects alive before it are left out of the garbage
    collector's passes; they return to it when the block ends (the section's comment)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def freeze_worker_heap() -> None:
    """Leaves the objects alive now out of the garbage collector's passes for good, unless
    the heap is frozen already (the launching process during `frozen_heap`, or an earlier
    stage's setup in this worker)."""
    if not gc.get_freeze_count():
        gc.freeze()


def make_pipeline(beam_args: Sequence[str]) -> beam.Pipeline:
    """A `beam.Pipeline` for Beam's command-line flags; local runs use `local_runner`,
    Dask runs `pipeline.dask_runner.DaskRunner` (module doc)."""
    options = ViewCachingOptions(list(beam_args))
    if is_local(options):
        return beam.Pipeline(runner=local_runner(options), options=options)
    if is_dask(options):
        from pipeline.dask_runner import DaskRunner  # dask is an optional extra

        return beam.Pipeline(runner=DaskRunner(), options=options)
    return beam.Pipeline(options=options)


def is_dry_run(options: PipelineOptions) -> bool:
    """Whether the runner only builds the job (`--dry_run=True`): nothing runs, nothing is written."""
    return bool(options.view_as(TestOptions).dry_run)


def dry_run_requested(beam_args: Sequence[str]) -> bool:
    """`is_dry_run` of Beam's command-line flags."""
    return is_dry_run(PipelineOptions(list(beam_args)))


def finish_dry_run(result: PipelineResult, options: PipelineOptions) -> str | None:
    """For a Dataflow dry run with `--dataflow_job_file`: stages the job's files to its staging
    location and writes its description to that file (module doc). Returns the file written;
    None when there is nothing to finish (no job file asked for, or not a Dataflow dry run)."""
    job = getattr(result, "job", None)  # Beam's apiclient.Job, on DataflowRunner's dry-run result
    path = options.view_as(DebugOptions).dataflow_job_file
    if job is None or not path or not is_dry_run(options):
        return None
    from apache_beam.runners.dataflow.internal import apiclient

    client = apiclient.DataflowApplicationClient(job.options, job.root_staging_location)
    client.create_job_description(job)  # stages the package, the pipeline and the other artifacts
    write_bytes(os.path.dirname(path) or ".", os.path.basename(path), job.json().encode("utf-8"))
    return path


def _beam_parser() -> argparse.ArgumentParser:
    """The parser Beam builds from every PipelineOptions class imported so far (its public
    hook, `add_extra_args_fn`, hands it over)."""
    parsers: list[argparse.ArgumentParser] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    return parsers[0]


def long_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every `--flag` `parser` defines, in its order."""
    # argparse lists its options only through `_actions`.
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


def beam_flags() -> list[str]:
    """Every `--flag` Beam defines (sorted)."""
    return sorted(long_flags(_beam_parser()))


def unknown_beam_flags(beam_args: Sequence[str]) -> list[str]:
    """The flags of `beam_args` (names, without values) that no Beam option defines. Imports
    the runner's own modules first (`require_runner_installed`: ValueError without them),
    which define more flags (Dask's)."""
    require_runner_installed(PipelineOptions(list(beam_args)))
    _, unknown = _beam_parser().parse_known_args(list(beam_args))
    return [arg.split("=", 1)[0] for arg in unknown if arg.startswith("-")]


def require_runner_installed(options: PipelineOptions) -> None:
    """ValueError (one line, naming the extra) when the runner's libraries are not installed;
    imports them otherwise (so their own flags are known to `unknown_beam_flags`)."""
    runner = options.view_as(StandardOptions).runner
    name = runner.lower().rsplit(".", 1)[-1] if isinstance(runner, str) else ""
    if name not in RUNNER_EXTRAS:
        return
    module, extra = RUNNER_EXTRAS[name]
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ValueError(
            f"--runner={runner} needs the {extra} extra (missing: {e.name or e}): "
            f'pip install -e ".[{extra}]"'
        ) from e
