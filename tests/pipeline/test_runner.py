"""pipeline/runner.py: local runs go to Beam's FnApiRunner without trying Prism."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.testing.util import assert_that, equal_to

from pipeline import job
from pipeline.runner import freeze_worker_heap, frozen_heap, make_pipeline


@pytest.mark.parametrize("args", [
    ["--runner=DirectRunner"],
    ["--runner=direct"],
    [],
    ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_threading"],
])
def test_local_runs_use_the_fn_api_runner_and_never_prism(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_prism(*_: object, **__: object) -> None:
        raise AssertionError("the Prism runner was tried")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", no_prism)
    root = make_pipeline(args)
    assert isinstance(root.runner, fn_runner.FnApiRunner)
    squares = root | beam.Create(range(5)) | beam.Map(lambda x: x * x)
    assert_that(squares, equal_to([0, 1, 4, 9, 16]))
    root.run().wait_until_finish()


def test_other_runners_are_beams_own() -> None:
    assert isinstance(make_pipeline(["--runner=BundleBasedDirectRunner"]).runner, BundleBasedDirectRunner)


@pytest.mark.parametrize("name", ["apache_beam.runners.dask.dask_runner.DaskRunner", "DaskRunner", "dask"])
def test_dask_runs_use_the_fixed_dask_runner(name: str) -> None:
    # Beam's own would mix a multi-output ParDo's outputs (pipeline/dask_runner.py).
    from pipeline.dask_runner import DaskRunner

    assert type(make_pipeline([f"--runner={name}", "--dask_client_address=tcp://127.0.0.1:1"]).runner) is DaskRunner


def test_the_portable_runner_is_beams_own() -> None:
    from apache_beam.runners.portability.portable_runner import PortableRunner

    assert type(make_pipeline(["--runner=PortableRunner", "--job_endpoint=localhost:1"]).runner) is PortableRunner


def test_only_a_dataflow_dry_run_with_a_job_file_has_anything_to_finish() -> None:
    # The Dataflow case itself (staging, the job file) runs against the GCS emulator:
    # tests/test_cli_dataflow.py.
    from types import SimpleNamespace

    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.runner import finish_dry_run, is_dry_run

    dataflow_dry = PipelineOptions(["--runner=DataflowRunner", "--dry_run=True", "--dataflow_job_file=job.json"])
    assert is_dry_run(dataflow_dry) and not is_dry_run(PipelineOptions(["--runner=DataflowRunner"]))
    assert finish_dry_run(SimpleNamespace(), dataflow_dry) is None  # a result without a job: not Dataflow's
    job = SimpleNamespace(job=object())
    assert finish_dry_run(job, PipelineOptions(["--runner=DataflowRunner", "--dry_run=True"])) is None
    assert finish_dry_run(job, PipelineOptions(["--runner=DataflowRunner", "--dataflow_job_file=j.json"])) is None


@pytest.mark.parametrize(
    ("flags", "on_this_machine"),
    [
        ("--runner=DirectRunner", True),
        ("--runner=DaskRunner --dask_client_address=tcp://127.0.0.1:8786", True),
        ("--runner=DaskRunner", True),  # no scheduler given: Dask starts a local cluster
        ("--runner=apache_beam.runners.dask.dask_runner.DaskRunner --dask_client_address=tcp://10.0.0.5:8786", False),
        ("--runner=PortableRunner --job_endpoint=localhost:8099 --environment_type=EXTERNAL "
         "--environment_config=localhost:50000", True),
        ("--runner=PortableRunner --job_endpoint=127.0.0.1:8099 --environment_type=LOOPBACK", True),
        ("--runner=PortableRunner --job_endpoint=localhost:8099 --environment_type=DOCKER", False),
        ("--runner=PortableRunner --job_endpoint=jobs.example:8099 --environment_type=LOOPBACK", False),
        ("--runner=DataflowRunner --project=p", False),
        ("--runner=FlinkRunner", False),
    ],
)
def test_local_paths_work_where_every_worker_runs_on_this_machine(flags: str, on_this_machine: bool) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.runner import workers_see_local_disk

    assert workers_see_local_disk(PipelineOptions(flags.split())) is on_this_machine


def test_flags_neither_beam_nor_anyone_defines_are_found() -> None:
    # Issue 17: Beam warned about --taks, dropped it, and the job ran every task.
    from pipeline.runner import beam_flags, unknown_beam_flags

    args = ["--runner=DirectRunner", "--project", "p", "--num_workers=2", "--taks=Pong*", "--dry_run=True", "--nope"]
    assert unknown_beam_flags(args) == ["--taks", "--nope"]
    assert {"--runner", "--project", "--temp_location", "--direct_num_workers"} <= set(beam_flags())


def test_a_runner_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.runner import require_runner_installed

    monkeypatch.setitem(sys.modules, "apache_beam.runners.dataflow.internal.apiclient", None)  # not importable
    with pytest.raises(ValueError, match=r'^--runner=DataflowRunner needs the dataflow extra .*pip install -e "\.\[dataflow\]"$'):
        require_runner_installed(PipelineOptions(["--runner=DataflowRunner"]))
    require_runner_installed(PipelineOptions(["--runner=DirectRunner"]))  # the local runner needs no extra


def test_cached_views_equal_new_views_and_share_their_values() -> None:
    from apache_beam.options.pipeline_options import DirectOptions, TypeOptions

    from pipeline.runner import ViewCachingOptions

    args = ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=in_memory"]
    cached, plain = ViewCachingOptions(args), PipelineOptions(args)
    for cls in (StandardOptions, DirectOptions, TypeOptions):
        assert cached.view_as(cls) is cached.view_as(cls)  # made once
        assert cached.view_as(cls).get_all_options() == plain.view_as(cls).get_all_options()
    cached.view_as(TypeOptions).pipeline_type_check = False  # a write through one view ...
    assert cached.view_as(TypeOptions).pipeline_type_check is False  # ... shows in the next
    assert cached.get_all_options()["pipeline_type_check"] is False
    assert make_pipeline(args)._options.view_as(DirectOptions).direct_num_workers == 2


# --- the garbage collector and the job's processes ---------------------------------------


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (a stage's setup in an earlier test of
    this process may have frozen the heap, as it does in a worker)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_heap_before_a_job_is_frozen_while_it_runs_and_given_back(unfrozen: None) -> None:
    kept = [object() for _ in range(10)]
    with frozen_heap():
        assert gc.get_freeze_count() >= len(kept)
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("the job failed")
    assert gc.get_freeze_count() == 0


def test_a_heap_frozen_before_is_left_frozen(unfrozen: None) -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with frozen_heap():
        freeze_worker_heap()
    assert gc.get_freeze_count() == frozen


def test_a_worker_freezes_once(unfrozen: None) -> None:
    freeze_worker_heap()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    _ = [object() for _ in range(10)]
    freeze_worker_heap()
    assert gc.get_freeze_count() == frozen


def test_run_job_runs_with_the_heap_frozen(monkeypatch: pytest.MonkeyPatch, unfrozen: None) -> None:
    seen: list[int] = []
    monkeypatch.setattr(job, "_run_job", lambda options, *, beam_args: seen.append(gc.get_freeze_count()) or {})
    assert job.run_job(None, beam_args=()) == {}  # type: ignore[arg-type]
    assert seen[0] > 0 and gc.get_freeze_count() == 0


@pytest.mark.parametrize("stage", ["episodes", "vl_records"])
def test_the_reading_stages_freeze_a_workers_heap(stage: str, unfrozen: None) -> None:
    """Each pass's first stage freezes the heap of the worker it runs in."""
    from pipeline.read_episodes import ReadEpisodesFn
    from pipeline.read_vl_records import ReadVLRecordsFn
    from schemas.datasets import get_dataset
    from schemas.vl import FieldMapping

    if stage == "episodes":
        fn = ReadEpisodesFn(get_dataset("atari"))
    else:
        fn = ReadVLRecordsFn(kind="caption", format="parquet", mapping=FieldMapping(), records_per_element=None)
    fn.setup()
    assert gc.get_freeze_count() > 0
