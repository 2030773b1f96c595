"""The storage emulator fixtures (`tests/storage_emulators.py`): a file written through fsspec
lists and reads back, in this process and in a subprocess given `bucket.env`; the
configuration is undone after the test; a server is stopped by its PID when its `with`
block ends, also when the block raised."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from tests.storage_emulators import Bucket, Server, gcs_server, is_listening, s3_server, use_bucket

pytestmark = pytest.mark.emulators


@pytest.fixture(params=["gcs", "s3"])
def bucket(request: pytest.FixtureRequest) -> Bucket:
    return request.getfixturevalue(f"{request.param}_bucket")


def test_write_list_read_through_fsspec(bucket: Bucket) -> None:
    url = bucket.url("dir", "hello.txt")
    with fsspec.open(url, "wb") as f:
        f.write(b"hello")
    fs, root = fsspec.core.url_to_fs(bucket.url())
    assert fs.ls(f"{root}/dir", detail=False) == [f"{bucket.name}/dir/hello.txt"]
    with fsspec.open(url, "rb") as f:
        assert f.read() == b"hello"


def test_a_subprocess_with_the_bucket_env_reaches_it(bucket: Bucket) -> None:
    """What `beam_runner.py` in a subprocess relies on: `bucket.env` alone configures fsspec."""
    with fsspec.open(bucket.url("from-parent.txt"), "wb") as f:
        f.write(b"parent")
    code = (
        "import fsspec, sys\n"
        "url = sys.argv[1]\n"
        "with fsspec.open(url + '/from-child.txt', 'wb') as f: f.write(b'child')\n"
        "print(fsspec.open(url + '/from-parent.txt', 'rb').open().read().decode())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FSSPEC_", "STORAGE_", "AWS_"))}
    out = subprocess.run([sys.executable, "-c", code, bucket.url()], env={**env, **bucket.env},
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "parent"
    with fsspec.open(bucket.url("from-child.txt"), "rb") as f:
        assert f.read() == b"child"


@pytest.mark.parametrize("kind", ["gcs", "s3"])
def test_the_configuration_is_undone_after_the_test(kind: str, request: pytest.FixtureRequest,
                                                     tmp_path: Path) -> None:
    server: Server = request.getfixturevalue(f"{kind}_emulator")
    before = dict(os.environ), {k: dict(v) for k, v in fsspec.config.conf.items()}
    with pytest.MonkeyPatch.context() as monkeypatch:
        bucket = use_bucket(monkeypatch, server, tmp_path)
        assert set(bucket.env) <= set(os.environ)
    assert (dict(os.environ), {k: dict(v) for k, v in fsspec.config.conf.items()}) == before


@pytest.mark.parametrize("start", [gcs_server, s3_server], ids=["gcs", "s3"])
def test_a_server_is_stopped_by_pid_when_its_block_ends(start: object, tmp_path: Path) -> None:
    with start(tmp_path / "ok") as server:  # type: ignore[operator]
        assert is_listening(server.endpoint) and _alive(server.pid)
    assert not is_listening(server.endpoint) and not _alive(server.pid)

    with pytest.raises(KeyError), start(tmp_path / "failed") as failed:  # type: ignore[operator]
        raise KeyError("the test failed")
    assert not is_listening(failed.endpoint) and not _alive(failed.pid)


def _alive(pid: int) -> bool:
    """Whether `pid` is a running process (the stopped server was waited for: no zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
