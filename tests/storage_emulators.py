"""Local stand-ins for cloud storage: `gcp-storage-emulator` (gs://) and moto's S3 server (s3://).

Each server is a child process on 127.0.0.1 at a free port, started by `gcs_server` or
`s3_server` (context managers: the server is stopped by its PID on exit, also when the
body raised). `use_bucket` points this process's clients at a fresh bucket of a running
server for one test, through `monkeypatch`, so nothing leaks to the next test; `Bucket.env`
is the same environment for a subprocess (`beam_runner.py`, Beam's stager).

What a client needs so that no call waits on the network (each of these cost seconds, or
a minute, per call when left alone):
- gcsfs: `STORAGE_EMULATOR_HOST`; `token="anon"` (`FSSPEC_GS_TOKEN=anon`), else it tries
  google.auth's default credentials first; `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`, else
  it probes every bucket for zonal/HNS support over gRPC (~60 s against the emulator).
  gcsfs reads that flag when it is first imported, so `use_bucket` also maps fsspec's
  `gs`/`gcs` to the plain `gcsfs.core.GCSFileSystem` in this process.
- google.auth (Beam's GCS client, `google-cloud-storage`): `NO_GCE_CHECK=true` and the
  metadata server's address (`GCE_METADATA_HOST`, `GCE_METADATA_IP`) on a closed local
  port, so the GCE probe is refused at once instead of timing out; an empty
  `CLOUDSDK_CONFIG` and no `GOOGLE_APPLICATION_CREDENTIALS`, so a developer's own
  credentials are never used (refreshing them would need the network).
- s3fs/botocore: fake keys, a region, the endpoint (`AWS_ENDPOINT_URL`,
  `FSSPEC_S3_ENDPOINT_URL`), `AWS_EC2_METADATA_DISABLED=true` (no instance-metadata probe)
  and config files that do not exist (no profile of the developer's).
fsspec reads `FSSPEC_*` variables once, at import: `use_bucket` also sets `fsspec.config.conf`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import fsspec
import pytest

HOST = "127.0.0.1"
PROJECT = "test-project"
START_TIMEOUT = 60.0  # seconds; moto imports for a few seconds on a busy 2-core machine
STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3  # a free port can be taken by another process between probe and bind
# Requests to 127.0.0.1 must never go through a proxy someone configured.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass(frozen=True)
class Server:
    """A running emulator: `kind` is "gcs" or "s3", `endpoint` is http://127.0.0.1:<port>."""

    kind: str
    endpoint: str
    pid: int
    log: Path

    @property
    def scheme(self) -> str:
        return "gs" if self.kind == "gcs" else "s3"


@dataclasses.dataclass(frozen=True)
class Bucket:
    """A bucket of `server`; `env` is what a client process needs to reach it (module doc)."""

    server: Server
    name: str
    env: Mapping[str, str]

    def url(self, *parts: str) -> str:
        """`gs://<bucket>/a/b` for `url("a", "b")`."""
        return "/".join([f"{self.server.scheme}://{self.name}", *(p.strip("/") for p in parts)])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def is_listening(endpoint: str) -> bool:
    host, _, port = endpoint.removeprefix("http://").partition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, int(port))) == 0


def _http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _DIRECT.open(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def _ready(kind: str, endpoint: str) -> bool:
    probe = "/" if kind == "gcs" else "/moto-api/"
    try:
        return _http("GET", endpoint + probe, timeout=1.0) == 200
    except OSError:
        return False


# The module each server runs, from the `test` extra.
_SERVER_MODULES = {"gcs": "gcp_storage_emulator", "s3": "moto.server"}


def _command(kind: str, port: int) -> list[str]:
    if kind == "gcs":
        # In memory: nothing to clean up, and a new server starts empty.
        return [sys.executable, "-m", "gcp_storage_emulator", "start",
                "--host", HOST, "--port", str(port), "--in-memory"]
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stops `process` by its PID: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def _start(kind: str, log: Path, timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    """(the process, its endpoint) once it answers; raises RuntimeError with its log otherwise."""
    module = _SERVER_MODULES[kind]
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise RuntimeError(f"{module} is not installed: pip install -e '.[test]'")
    env = {**os.environ, "NO_PROXY": HOST, "no_proxy": HOST}
    for _ in range(_START_ATTEMPTS):
        endpoint = f"http://{HOST}:{free_port()}"
        with log.open("ab") as out:
            process = subprocess.Popen(_command(kind, int(endpoint.rsplit(":", 1)[1])),
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if _ready(kind, endpoint):
                return process, endpoint
            time.sleep(0.05)
        stop(process)
        if time.monotonic() >= deadline:
            break  # a slow start is not a port clash: do not try again
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the {kind} emulator did not answer within {timeout:.0f} s; its log {log}:\n{tail}")


@contextlib.contextmanager
def _server(kind: str, log_dir: Path, timeout: float) -> Iterator[Server]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{kind}-emulator.log"
    process, endpoint = _start(kind, log, timeout)
    try:
        yield Server(kind=kind, endpoint=endpoint, pid=process.pid, log=log)
    finally:
        stop(process)


def gcs_server(log_dir: Path, *, timeout: float = START_TIMEOUT) -> contextlib.AbstractContextManager[Server]:
    """Runs `gcp-storage-emulator` (in memory) for the `with` block."""
    return _server("gcs", log_dir, timeout)


def s3_server(log_dir: Path, *, timeout: float = START_TIMEOUT) -> contextlib.AbstractContextManager[Server]:
    """Runs moto's S3 server for the `with` block."""
    return _server("s3", log_dir, timeout)


def create_bucket(server: Server, name: str) -> None:
    """Creates bucket `name` over the server's own HTTP API (no client library, no credentials)."""
    if server.kind == "gcs":
        body = json.dumps({"name": name}).encode()
        status = _http("POST", f"{server.endpoint}/storage/v1/b?project={PROJECT}", body)
    else:
        status = _http("PUT", f"{server.endpoint}/{name}")
    if status != 200:
        raise RuntimeError(f"could not create bucket {name} on {server.endpoint}: HTTP {status}")


def client_env(server: Server, scratch: Path) -> dict[str, str]:
    """Environment for a client of `server` (module doc); `scratch` holds empty config dirs."""
    dead = f"{HOST}:{free_port()}"  # nothing listens there: probes are refused at once
    common = {"NO_PROXY": f"{HOST},localhost", "no_proxy": f"{HOST},localhost"}
    if server.kind == "gcs":
        (scratch / "gcloud").mkdir(parents=True, exist_ok=True)
        return {
            **common,
            "STORAGE_EMULATOR_HOST": server.endpoint,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "FSSPEC_GS_TOKEN": "anon",
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": dead,
            "GCE_METADATA_IP": dead,
            "CLOUDSDK_CONFIG": str(scratch / "gcloud"),
            "GOOGLE_CLOUD_PROJECT": PROJECT,
        }
    return {
        **common,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": server.endpoint,
        "FSSPEC_S3_ENDPOINT_URL": server.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(scratch / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-aws-credentials"),
    }


# Variables that would send a client to real credentials or another endpoint.
_UNSET = {
    "gcs": ("GOOGLE_APPLICATION_CREDENTIALS",),
    "s3": ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"),
}


def clear_fsspec_caches() -> None:
    """Forgets fsspec's cached filesystem instances (they hold endpoints, sessions, listings)."""
    for protocol in ("gs", "s3"):
        with contextlib.suppress(ImportError, ValueError):
            fsspec.get_filesystem_class(protocol).clear_instance_cache()


def use_bucket(monkeypatch: pytest.MonkeyPatch, server: Server, scratch: Path) -> Bucket:
    """A new, empty bucket on `server`, with this process's clients pointed at it until
    `monkeypatch` is undone (env, fsspec's config and registry; caches cleared both ways)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    create_bucket(server, name)
    env = client_env(server, scratch)
    for key in _UNSET[server.kind]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if server.kind == "gcs":
        import gcsfs.core

        monkeypatch.setitem(fsspec.config.conf, "gs", {"token": "anon"})
        # Whatever gcsfs chose at import (module doc), this process uses the plain class.
        # fsspec's public `register_implementation` cannot be undone; its dict can.
        # (`fsspec.registry` is the read-only view; the module is imported by name.)
        registry = importlib.import_module("fsspec.registry")._registry
        for protocol in ("gs", "gcs"):
            monkeypatch.setitem(registry, protocol, gcsfs.core.GCSFileSystem)
    else:
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": server.endpoint})
    clear_fsspec_caches()  # the caller clears them again after the test (conftest fixtures)
    return Bucket(server=server, name=name, env=env)
