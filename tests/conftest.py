"""Prints the fault suite's verdict (tests/faults/) at the end of a run: one line per fault, then
`faults: N/M held`. Here, not in tests/faults/: with pytest-xdist the controller loads only
this top-level conftest, and it sees every worker's reports.

Hypothesis runs without its per-example deadline: the engine and emulator tests load both
cores, and a property that held is no less true for taking 270 ms once (deadline flakes
were seen on a loaded machine). Examples and shrinking are unchanged.

Also the storage emulator fixtures (`gcs_bucket`, `s3_bucket`; `tests/storage_emulators.py`)
and the engine servers (`dask_scheduler`, `portable_endpoints`; `tests/engines/servers.py`),
here so that a test anywhere in the tree can use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.engines import servers
from tests.storage_emulators import Bucket, Server, clear_fsspec_caches, gcs_server, s3_server, use_bucket

settings.register_profile("gato", deadline=None)
settings.load_profile("gato")

_PREFIX = "tests/faults/test_faults.py::test_fault["


def pytest_terminal_summary(terminalreporter: Any) -> None:
    outcomes: dict[str, str] = {}
    for status in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(status, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith(_PREFIX) and getattr(report, "when", "call") in ("call", "setup"):
                name = nodeid[len(_PREFIX):-1]
                if status != "passed" or name not in outcomes:
                    outcomes[name] = "held" if status == "passed" else "BROKEN"
    if not outcomes:
        return
    terminalreporter.section("fault suite")
    for name, outcome in outcomes.items():
        terminalreporter.write_line(f"fault {name}: {outcome}")
    held = sum(1 for outcome in outcomes.values() if outcome == "held")
    terminalreporter.write_line(f"faults: {held}/{len(outcomes)} held")


# --- Storage emulators (tests/storage_emulators.py) ----------------------------------------
# One server of each kind per test process (each xdist worker starts its own), started on
# first use; each test gets a new bucket and its own client configuration.


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with gcs_server(tmp_path_factory.mktemp("gcs-emulator")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with s3_server(tmp_path_factory.mktemp("s3-emulator")) as server:
        yield server


@pytest.fixture
def gcs_bucket(gcs_emulator: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Bucket]:
    """A new gs:// bucket; this process's clients (and `bucket.env` for subprocesses) reach it."""
    yield use_bucket(monkeypatch, gcs_emulator, tmp_path / "cloud-config")
    clear_fsspec_caches()


@pytest.fixture
def s3_bucket(s3_emulator: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Bucket]:
    """A new s3:// bucket; this process's clients (and `bucket.env` for subprocesses) reach it."""
    yield use_bucket(monkeypatch, s3_emulator, tmp_path / "cloud-config")
    clear_fsspec_caches()


# --- Engine servers (tests/engines/servers.py) ----------------------------------------------
# One of each per test process (each xdist worker starts its own), started on first use.


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a dask.distributed scheduler on 127.0.0.1 with two worker processes."""
    with servers.dask_cluster(tmp_path_factory.mktemp("dask_cluster")) as address:
        yield address


@pytest.fixture(scope="session")
def portable_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(job endpoint, worker pool endpoint): Beam's job service and an external worker pool."""
    with servers.portable_services(tmp_path_factory.mktemp("portable")) as endpoints:
        yield endpoints
