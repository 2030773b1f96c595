"""The whole job on object storage (issue 14, item 3): input TFDS data in an emulated bucket
(gcp-storage-emulator for gs://, moto's S3 server for s3://), output in the bucket, the
reader streaming from it; every output file byte-identical to a run on a local copy.

Identity holds because every path goes through fsspec (`formats/files.py`), outputs
name input shards relative to the data dir (`WorkItem.source_file`), and the manifest
records neither the data dir nor the output dir (`JobOptions.to_config`), so no file
depends on where the data lives or where the output goes.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest

import beam_runner
from formats.claim import ClaimedOutputError, release_claim, take_claim
from planning.options import SAMPLES_DATA_DIR
from reader import GatoReader, ReaderOptions
from tests.storage_emulators import Bucket

pytestmark = [pytest.mark.emulators, pytest.mark.slow]

DATASET = "metaworld"  # 3 tasks, 30 episodes: the smallest bundled dataset with several tasks
TFDS_NAME = "gato_metaworld"


@pytest.fixture(params=["gcs", "s3"])
def bucket(request: pytest.FixtureRequest) -> Bucket:
    return request.getfixturevalue(f"{request.param}_bucket")


def _run(data_dir: str, output_dir: str) -> None:
    code = beam_runner.main([f"--dataset={DATASET}", f"--data_dir={data_dir}",
                             f"--output_dir={output_dir}", "--log_level=WARNING"])
    assert code == 0


def _files(url: str) -> dict[str, bytes]:
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}


def _first_batches(outputs: list[str], count: int) -> list[dict[str, np.ndarray]]:
    stream = GatoReader(outputs, ReaderOptions(seed=3)).batches(4, rank=0, world_size=1)
    return [next(stream) for _ in range(count)]


def test_the_whole_job_on_a_bucket_equals_a_local_run(bucket: Bucket, tmp_path: Path) -> None:
    local_data = tmp_path / "data"
    shutil.copytree(Path(SAMPLES_DATA_DIR) / TFDS_NAME, local_data / TFDS_NAME)
    fs, _ = fsspec.core.url_to_fs(bucket.url())
    fs.put(str(local_data / TFDS_NAME), bucket.url("data") + "/", recursive=True)

    _run(str(local_data), str(tmp_path / "out"))
    started = time.monotonic()
    _run(bucket.url("data"), bucket.url("out"))
    elapsed = time.monotonic() - started

    local, remote = _files(str(tmp_path / "out")), _files(bucket.url("out"))
    assert sorted(remote) == sorted(local)
    for relative in sorted(local):  # the manifest too: it names no location
        assert remote[relative] == local[relative], relative
    # Nothing of the run's own is left in the bucket: no staging, temporaries or claim.
    assert not [p for p in remote if p.startswith(("_staging", "_tmp", "_claim"))]
    # No per-operation retry or credential probe left to time out (each costs 30-60 s).
    assert elapsed < 60, f"the job on {bucket.server.kind} took {elapsed:.0f} s"

    for got, want in zip(_first_batches([bucket.url("out")], 3), _first_batches([str(tmp_path / "out")], 3)):
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_a_second_job_cannot_claim_an_output_in_a_bucket(s3_bucket: Bucket) -> None:
    """The claim's create-if-absent (`open(..., "xb")`) holds on the object store itself:
    s3fs sends `If-None-Match: *`. On S3 only: gcsfs sends `ifGenerationMatch=0`, which GCS
    honours but gcp-storage-emulator ignores (a second "xb" open overwrites there)."""
    bucket = s3_bucket
    claim = take_claim(bucket.url("out"))
    try:
        with pytest.raises(ClaimedOutputError):
            take_claim(bucket.url("out"))
    finally:
        release_claim(bucket.url("out"), claim.run_id)
    release = take_claim(bucket.url("out"))  # free again once released
    release_claim(bucket.url("out"), release.run_id)
