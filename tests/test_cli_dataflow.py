"""The README's Dataflow command, verified with no network: `python beam_runner.py` with the
command of the README's "On Dataflow" section (bucket and project filled in) plus
`--dry_run=True --dataflow_job_file=job.json --no_auth`, against the GCS emulator
(`tests/storage_emulators.py`), from a copy of the repository (Beam's stager builds the
package in the `--setup_file` directory; a copy keeps concurrent builds apart and builds from
a clean tree, as CI does).

The dry run plans from the bucket, builds the sdist, stages it with the pipeline to
`--temp_location`, and writes the job description Dataflow would receive
(`pipeline.runner.finish_dry_run`). We check what a worker would get: our stages, our package
(with the bundled text model, installable as a wheel), shared-storage URLs only, and no path
of the launcher's disk anywhere in the job description or in the configuration the stages
carry; and that the output directory is left untouched.
"""

from __future__ import annotations

import base64
import bz2
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import fsspec
import pytest

from tests.json_strings import strings
from tests.storage_emulators import Bucket

pytestmark = pytest.mark.emulators

REPO = Path(__file__).resolve().parents[1]
PROJECT = "test-project"
# Stage names of the job diagram (pipeline/passes.py) that the staged pipeline must hold.
STAGES = {"WorkItems", "Pass1", "Pass1/Read", "Pass1/ExpertReturn", "Pass1/PromptPools", "Pass2", "Pass2/Read",
          "Pass2/Validate", "Pass2/Filter", "Pass2/Tokenize", "Pass2/Sequence", "Pass2/Write", "Outputs",
          "Outputs/Stats", "Outputs/Manifest"}
SAMPLES = {"atari": "rlu_atari", "babyai": "gato_babyai"}
# Not part of the copy: caches, builds, environments, outputs.
_NOT_COPIED = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist", "out",
                                     "bench_out", ".pytest_cache", ".hypothesis")


def readme_dataflow_args() -> list[str]:
    """The flags of the `python beam_runner.py` command in the README's "On Dataflow" section."""
    section = (REPO / "README.md").read_text().split("### On Dataflow", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's 'On Dataflow' section has no ```sh block"
    command = re.search(r"^python beam_runner\.py (?:.*\\\n)*.*$", block.group(1), re.M)
    assert command, "no `python beam_runner.py` command in the README's 'On Dataflow' block"
    return shlex.split(command.group(0).replace("\\\n", " "))[2:]


def launcher_roots(*extra: Path) -> list[str]:
    """Paths of this machine that must not reach a worker: the checkout, the environment,
    home, and the test's own directories."""
    return sorted({str(REPO), sys.prefix, os.path.realpath(sys.prefix), str(Path.home()), *map(str, extra)})


def pickled_fns(pipeline: Any) -> dict[str, bytes]:
    """{stage: its pickled DoFn, decompressed} of every ParDo of a runner-API pipeline proto
    (Beam 2.77's pickler: base64 of bz2, or of zlib with use_zlib)."""
    import zlib

    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    from apache_beam.portability import python_urns

    fns = {}
    for t in pipeline.components.transforms.values():
        if t.spec.urn != common_urns.primitives.PAR_DO.urn:
            continue
        do_fn = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload).do_fn
        if do_fn.urn == python_urns.PICKLED_DOFN_INFO:
            raw = base64.b64decode(do_fn.payload)
            fns[t.unique_name] = bz2.decompress(raw) if raw[:3] == b"BZh" else zlib.decompress(raw)
    return fns


def dry_run(bucket: Bucket, tmp_path: Path, dataset: str) -> tuple[Path, dict[str, Any], list[str]]:
    """(the repository copy, the job description, the README flags run) of a dry run of the
    README's command on the bundled samples of `dataset`, uploaded to the bucket."""
    args = [a.replace("MY_BUCKET", bucket.name).replace("MY_PROJECT", PROJECT) for a in readme_dataflow_args()]
    data_dir = next(a.split("=", 1)[1] for a in args if a.startswith("--data_dir="))
    if dataset != "atari":  # the README runs Atari; the same command on another dataset
        args = [f"--dataset={dataset}" if a.startswith("--dataset=") else a
                for a in args if not a.startswith("--tasks=")]
    fs, _ = fsspec.core.url_to_fs(data_dir)
    fs.put(str(REPO / "samples" / "data" / SAMPLES[dataset]), f"{data_dir}/", recursive=True)
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=_NOT_COPIED)
    # Nothing but the bucket's client settings: planning reads gs:// through fsspec, like
    # everything else (formats/files.py), so no etils/tf.io.gfile switch is needed.
    env = {**os.environ, **bucket.env}
    run = subprocess.run(
        [sys.executable, "beam_runner.py", *args, "--dry_run=True", "--dataflow_job_file=job.json",
         "--no_auth"],  # the emulator takes anonymous requests; no credential lookup (Beam retries it ~30 s)
        cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "dry run: the job was built, not run (files staged, job description in job.json)" in run.stderr
    return repo, json.loads((repo / "job.json").read_text()), args


@pytest.mark.parametrize("dataset", ["atari", "babyai"])
def test_the_readme_dataflow_command_builds_stages_and_describes_the_job(
    dataset: str, gcs_bucket: Bucket, tmp_path: Path
) -> None:
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    repo, job, args = dry_run(gcs_bucket, tmp_path, dataset)
    fs, _ = fsspec.core.url_to_fs(gcs_bucket.url())
    roots = launcher_roots(repo, tmp_path)

    # The job description: our options, files staged in the bucket, no launcher path.
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert (options["runner"], options["project"], options["region"]) == ("DataflowRunner", PROJECT, "us-central1")
    staging = f"{gcs_bucket.url('tmp')}/{options['job_name']}."
    assert options["staging_location"].startswith(staging)
    (pool,) = job["environment"]["workerPools"]
    packages = {p["name"]: p["location"] for p in pool["packages"]}
    assert "workflow.tar.gz" in packages  # the package --setup_file built
    assert all(loc.startswith(f"storage.googleapis.com/{gcs_bucket.name}/tmp/") for loc in packages.values())
    local = [s for s in strings(job) if s.startswith(("/", "file:")) or any(r in s for r in roots)]
    assert local == []

    # The staged package is ours, with the bundled text model as package data.
    workflow = tmp_path / "workflow.tar.gz"
    fs.get(f"gs://{packages['workflow.tar.gz'].removeprefix('storage.googleapis.com/')}", str(workflow))
    with tarfile.open(workflow) as sdist:
        names = set(sdist.getnames())
        top = min(names, key=len)
        pkg_info = sdist.extractfile(f"{top}/PKG-INFO").read().decode()
    assert re.search(r"^Name: gato-data$", pkg_info, re.M) and top.startswith("gato_data-")
    assert {f"{top}/{f}" for f in ("transforms/text_models/gato_text.model", "pipeline/job.py",
                                  "beam_runner.py")} <= names

    # The staged pipeline: our stages; every artifact a worker fetches is a gs:// URL.
    pipeline = beam_runner_api_pb2.Pipeline.FromString(fs.cat(options["pipelineUrl"]))
    assert STAGES <= {t.unique_name for t in pipeline.components.transforms.values()}
    for environment in pipeline.components.environments.values():
        for dep in environment.dependencies:
            assert dep.type_urn == common_urns.artifact_types.URL.urn
            assert beam_runner_api_pb2.ArtifactUrlPayload.FromString(dep.type_payload).url.startswith(staging)
    # What the stages carry: data paths are the bucket's, the text model is the bundled name,
    # never a file of the launcher (the samples, the model in the checkout). A pickled function
    # also records the source file it was defined in: code, not data, so not checked.
    fns = pickled_fns(pipeline)
    launcher_files = [str(REPO / "samples").encode(), str(repo / "samples").encode(), b"/text_models/"]
    assert [stage for stage, fn in fns.items() if any(f in fn for f in launcher_files)] == []
    assert f"gs://{gcs_bucket.name}/tensorflow_datasets/{SAMPLES[dataset]}/".encode() in b"".join(fns.values())
    has_model = [stage for stage, fn in fns.items() if b"bundled:gato_text.model" in fn]
    assert bool(has_model) == (dataset == "babyai")  # BabyAI has text: the default model, by name

    # A dry run leaves the output directory as it was: no claim, no staging directory.
    output_dir = next(a.split("=", 1)[1] for a in args if a.startswith("--output_dir="))
    assert not fs.exists(output_dir) or fs.find(output_dir) == []


def test_the_sdist_builds_a_wheel_that_loads_the_bundled_model_where_installed(tmp_path: Path) -> None:
    """What a worker does with the sdist --setup_file stages: builds and installs it, then loads the
    bundled model from the installed package (not from a checkout)."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=_NOT_COPIED)
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist)]
    subprocess.run([*build, "--sdist", str(repo)], check=True, capture_output=True, timeout=300)
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    subprocess.run([*build, "--wheel", str(unpacked)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    code = (
        "import transforms.text as t\n"
        "tok = t.SentencePieceTokenizer.from_path(t.BUNDLED_MODEL)\n"
        "print(t.__file__, tok.vocab_size)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True, timeout=120)
    where, size = out.stdout.split()
    assert Path(where).is_relative_to(site) and int(size) > 0
