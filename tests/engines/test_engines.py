"""The real job on real engines writes the same bytes as on the in-process runner.

`python beam_runner.py --dataset=atari`, and `--dataset=coco_captions` (vision-language
pairs, packed per file after a GroupByKey), on the bundled samples run in a subprocess on
- Beam's local runner (`--runner=DirectRunner`, the FnApiRunner in process): the reference;
- Beam's DaskRunner on a `dask.distributed` cluster of two worker processes (through
  `pipeline/dask_runner.py`), named with Beam's own flags;
- Beam's PortableRunner, with Beam's Python job service and an external SDK worker pool.
Every file of each output (shards, statistics, report, manifest) must be byte-identical
to the reference's; the servers come from `tests/conftest.py` (`tests/engines/servers.py`).
The commands are the README's "On other engines".
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engines import servers
from tests.json_strings import strings

pytestmark = pytest.mark.engines

JOBS = {
    "atari": ["--dataset=atari", "--log_level=WARNING"],
    "coco_captions": ["--dataset=coco_captions", "--log_level=WARNING"],
}
DASK_RUNNER = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"
JOB_TIMEOUT = 300.0  # seconds; a run takes ~10 s on two cores


def run_job(job: list[str], output: Path, *beam_args: str) -> None:
    """`python beam_runner.py <job>` on the samples into `output`; fails with its stderr."""
    done = subprocess.run(
        [sys.executable, str(servers.REPO / "beam_runner.py"), *job, f"--output_dir={output}", *beam_args],
        cwd=servers.REPO, env=servers.server_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def digests(root: Path) -> dict[str, str]:
    """{path relative to `root`: sha256} of every file under it."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module", params=sorted(JOBS))
def job(request: pytest.FixtureRequest) -> list[str]:
    return JOBS[request.param]


@pytest.fixture(scope="module")
def reference(job: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("in_process") / "out"
    run_job(job, output, "--runner=DirectRunner")
    return output


def test_the_reference_output_is_whole(job: list[str], reference: Path) -> None:
    files = digests(reference)
    dataset = job[0].removeprefix("--dataset=")
    assert "manifest.json" in files and "report.html" in files
    assert any(f.startswith(f"sequences/{dataset}/") for f in files) and "stats/stats.parquet" in files


def test_dask_runner_on_a_two_worker_cluster_writes_the_same_bytes(
    dask_scheduler: str, job: list[str], reference: Path, tmp_path: Path
) -> None:
    before = servers.executed_tasks(dask_scheduler)
    run_job(job, tmp_path / "out", DASK_RUNNER, f"--dask_client_address={dask_scheduler}")
    assert digests(tmp_path / "out") == digests(reference)
    after = servers.executed_tasks(dask_scheduler)
    assert sorted(after) == ["worker-0", "worker-1"]
    assert all(after[w] > before.get(w, 0) for w in after), (before, after)  # both workers ran tasks


def test_portable_runner_with_an_external_worker_pool_writes_the_same_bytes(
    portable_endpoints: tuple[str, str], job: list[str], reference: Path, tmp_path: Path
) -> None:
    service, pool = portable_endpoints
    run_job(job, tmp_path / "out", "--runner=PortableRunner", f"--job_endpoint={service}",
            "--environment_type=EXTERNAL", f"--environment_config={pool}")
    assert digests(tmp_path / "out") == digests(reference)


def test_the_manifest_names_no_absolute_path(reference: Path) -> None:
    # What makes the bytes equal across output directories and machines (planning/options.py).
    manifest = json.loads((reference / "manifest.json").read_text())
    assert [s for s in strings(manifest) if os.path.isabs(s) or "://" in s] == []
