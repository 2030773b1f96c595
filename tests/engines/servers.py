"""The servers engine tests run the job against, started and stopped by the tests themselves.

`dask_cluster` starts a `dask.distributed` scheduler and worker processes, `portable_services`
Beam's Python job service and an external SDK worker pool. All of them:
- are child processes of the test, listening on the loopback interface only (Beam's job
  service binds `localhost`; our worker pool, Beam's servicer, binds 127.0.0.1, where
  Beam's `worker_pool_main` would bind every interface);
- pick a free port themselves (port 0) and write it to a file the test reads, so two test
  processes never race for one;
- get `PYTHONPATH` = the root of this checkout (their workers import this tree's code,
  never an installed copy) and a `PATH` led by this interpreter's directory (Beam's pool
  starts SDK workers as `python`);
- are waited for with a bounded timeout (`READY_TIMEOUT`): one that does not come up fails
  the test with the end of its log;
- are stopped by PID when the `with` block ends, failed or not: SIGTERM, then SIGKILL after
  `STOP_TIMEOUT`; the worker pool's SDK workers (its children) first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TypeVar

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0  # seconds; a cold start imports Beam, dask and this project
STOP_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"
T = TypeVar("T")

# Beam's external worker pool (the servicer `worker_pool_main` runs), bound to 127.0.0.1;
# argv[1]: the file its port is written to.
_WORKER_POOL = """
import sys
from concurrent import futures
import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
server = grpc.server(futures.ThreadPoolExecutor())
port = server.add_insecure_port("127.0.0.1:0")
beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
    BeamFnExternalWorkerPoolServicer(use_process=True), server)
server.start()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(port))
import os
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
server.wait_for_termination()
"""


def server_env() -> dict[str, str]:
    """This process's environment, with this checkout first on PYTHONPATH and this
    interpreter first on PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    return env


@dataclasses.dataclass
class Server:
    """One child process and the log it writes."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    log_file: IO[bytes]

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return f"--- {self.name} ({self.log}), last lines:\n" + "\n".join(text[-lines:])

    def stop(self) -> None:
        for pid in _children(self.process.pid):
            _stop_pid(pid)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self.log_file.close()


def _children(pid: int) -> list[int]:
    """PIDs of `pid`'s children (Linux /proc; none found elsewhere)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _running(pid: int) -> bool:
    """Whether `pid` runs: an exited child its parent has not reaped yet (a zombie) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.1)
    if _running(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start(name: str, args: Sequence[str], log_dir: Path) -> Server:
    log = log_dir / f"{name}.log"
    log_file = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, *args], cwd=log_dir, env=server_env(), stdout=log_file, stderr=subprocess.STDOUT
    )
    return Server(name, process, log, log_file)


def wait_for(what: str, ready: Callable[[], T | None], servers: Sequence[Server], timeout: float = READY_TIMEOUT) -> T:
    """`ready()`'s first value that is not None, polled until `timeout`; fails with the
    servers' logs when it runs out or a server exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value is not None:
            return value
        dead = [s for s in servers if s.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"{dead[0].name} exited" if dead else f"not ready after {timeout:.0f} s"
            raise RuntimeError(f"{what}: {why}\n" + "\n".join(s.tail() for s in servers))
        time.sleep(0.2)


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _stop_all(servers: Sequence[Server]) -> None:
    for server in reversed(servers):
        server.stop()


@contextlib.contextmanager
def dask_cluster(log_dir: Path, *, workers: int = 2) -> Iterator[str]:
    """The address (tcp://127.0.0.1:PORT) of a scheduler with `workers` worker processes
    of one thread each, all registered. No nanny: each worker is one process, one PID.
    Should the test process die, the scheduler stops once idle and its workers follow."""
    scheduler_file = log_dir / "scheduler.json"
    servers = [start("dask-scheduler", [
        "-m", "distributed.cli.dask_scheduler", "--host", LOOPBACK, "--port", "0", "--no-dashboard",
        "--scheduler-file", str(scheduler_file), "--idle-timeout", "600",
    ], log_dir)]
    try:
        address = wait_for("dask scheduler", lambda: _scheduler_address(scheduler_file), servers)
        for i in range(workers):
            servers.append(start(f"dask-worker-{i}", [
                "-m", "distributed.cli.dask_worker", address, "--host", LOOPBACK, "--no-nanny",
                "--nthreads", "1", "--no-dashboard", "--name", f"worker-{i}", "--death-timeout", "60",
                "--local-directory", str(log_dir / f"worker-{i}"),
            ], log_dir))
        _wait_for_workers(address, workers, servers)
        yield address
    finally:
        _stop_all(servers)


def _scheduler_address(scheduler_file: Path) -> str | None:
    try:  # the scheduler may be writing the file
        return json.loads(_read(scheduler_file) or "null")["address"]
    except (ValueError, TypeError, KeyError):
        return None


def _wait_for_workers(address: str, workers: int, servers: Sequence[Server]) -> None:
    from distributed import Client

    def registered(dask_scheduler: object) -> int:
        return len(dask_scheduler.workers)  # type: ignore[attr-defined]

    with Client(address, set_as_default=False, timeout=READY_TIMEOUT) as client:
        wait_for(f"{workers} dask workers", lambda: True if client.run_on_scheduler(registered) >= workers else None,
                 servers)


def executed_tasks(address: str) -> dict[str, int]:
    """{worker name: tasks it has executed so far}."""
    from distributed import Client

    with Client(address, set_as_default=False, timeout=10) as client:
        counts = client.run(lambda dask_worker: (dask_worker.name, dask_worker.state.executed_count))
    return dict(counts.values())


@contextlib.contextmanager
def portable_services(log_dir: Path) -> Iterator[tuple[str, str]]:
    """(job endpoint, worker pool endpoint) of Beam's Python job service and an external
    SDK worker pool, both on the loopback interface."""
    job_port, pool_port = log_dir / "job_service.port", log_dir / "worker_pool.port"
    servers = [
        start("job-service", [
            "-m", "apache_beam.runners.portability.local_job_service_main", "--port=0",
            f"--port_file={job_port}", f"--staging_dir={log_dir / 'staging'}",
        ], log_dir),
        start("worker-pool", ["-c", _WORKER_POOL, str(pool_port)], log_dir),
    ]
    try:
        job = wait_for("job service", lambda: _read(job_port), servers)
        pool = wait_for("worker pool", lambda: _read(pool_port), servers)
        yield f"localhost:{int(job)}", f"{LOOPBACK}:{int(pool)}"
    finally:
        _stop_all(servers)
