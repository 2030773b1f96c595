"""planning/worker_paths.py: which paths a job's workers open, and the one-line refusal of those
on the launcher's disk for a runner whose workers are elsewhere."""

from __future__ import annotations

import pytest

from planning.options import SAMPLES_DATA_DIR, JobOptions
from planning.worker_paths import is_launcher_path, refuse_launcher_paths, worker_paths

REMOTE = dict(data_dir="gs://b/tfds", output_dir="gs://b/out")


@pytest.mark.parametrize(("path", "local"), [
    ("out/atari", True), ("/data/tfds", True), ("file:///data", True), ("memory://x/out", True),
    ("gs://b/out", False), ("s3://b/out", False), ("simplecache::gs://b/m.model", False),
])
def test_launcher_paths_are_local_files_and_memory(path: str, local: bool) -> None:
    assert is_launcher_path(path) is local


def test_workers_open_the_data_dir_the_output_dir_and_a_model_file() -> None:
    options = JobOptions(dataset="babyai", sentencepiece_model="gs://b/text.model", **REMOTE)
    assert [(p.flag, p.path) for p in worker_paths(options)] == [
        ("--data_dir", "gs://b/tfds"), ("--output_dir", "gs://b/out"), ("--sentencepiece_model", "gs://b/text.model"),
    ]
    # The bundled model is no path: each worker loads it from its installed package.
    assert [p.flag for p in worker_paths(JobOptions(dataset="babyai", sentencepiece_model="bundled:gato_text.model",
                                                    **REMOTE))] == ["--data_dir", "--output_dir"]
    # An rlds: dataset names its own directory (data_dir is ignored); the spec file is read
    # by the launcher only, so it is no worker path.
    rlds = JobOptions(dataset="rlds:/data/robot", output_dir="gs://b/out", rlds_spec="/home/me/spec.toml")
    assert [p.shown() for p in worker_paths(rlds)] == ["--dataset=rlds:/data/robot", "--output_dir=gs://b/out"]


def test_shared_storage_everywhere_is_accepted() -> None:
    refuse_launcher_paths(JobOptions(dataset="atari", **REMOTE), runner="DataflowRunner")
    refuse_launcher_paths(JobOptions(dataset="rlds:gs://b/robot", output_dir="s3://b/out", rlds_spec="spec.toml"),
                          runner="DataflowRunner")


def test_every_local_worker_path_is_named_in_one_line() -> None:
    options = JobOptions(dataset="babyai", output_dir="out/babyai", sentencepiece_model="/home/me/text.model")
    with pytest.raises(ValueError) as refused:
        refuse_launcher_paths(options, runner="DataflowRunner")
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        "DataflowRunner runs the job on workers that cannot see this machine's disk, but "
        f"--data_dir={SAMPLES_DATA_DIR} (not given: the bundled samples); --output_dir=out/babyai; "
        "--sentencepiece_model=/home/me/text.model are on it: give paths on shared storage, e.g. "
        "--data_dir=gs://MY_BUCKET/... (copy local input there first: gcloud storage cp -r DIR gs://MY_BUCKET/...)"
    )


def test_a_local_rlds_dir_is_named_with_its_flag() -> None:
    with pytest.raises(ValueError, match=r"but --dataset=rlds:/data/robot is on it: .* e\.g\. --dataset=rlds:gs://"):
        refuse_launcher_paths(JobOptions(dataset="rlds:/data/robot", output_dir="gs://b/o"), runner="DataflowRunner")


def test_a_path_whose_storage_library_is_missing_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    from planning.worker_paths import require_storage

    def missing(protocol: str) -> type:
        if protocol == "gs":
            raise ImportError("Please install gcsfs to access Google Storage")
        return fsspec.implementations.local.LocalFileSystem

    require_storage(JobOptions(dataset="atari", data_dir="gs://b/data", output_dir="out/x"))
    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(ValueError, match=r"^--data_dir=gs://b/data: gs:// paths need gcsfs, not installed: pip install gcsfs$"):
        require_storage(JobOptions(dataset="atari", data_dir="gs://b/data", output_dir="out/x"))
