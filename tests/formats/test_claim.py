"""formats/claim.py: one writer per output directory (issue 13, defect 1)."""

from __future__ import annotations

import json
import multiprocessing
import socket
from pathlib import Path

import pytest

from formats.claim import (
    Claim,
    ClaimedOutputError,
    ClaimLostError,
    check_claim,
    read_claim,
    release_claim,
    take_claim,
)
from schemas.output import CLAIM_FILE


def test_a_second_claim_is_refused_in_one_line_naming_the_holder(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = take_claim(out)
    assert len(first.run_id) == 32 and read_claim(out) == first
    assert json.loads((tmp_path / "out" / CLAIM_FILE).read_text())["run_id"] == first.run_id
    with pytest.raises(ClaimedOutputError) as refused:
        take_claim(out)
    message = str(refused.value)
    assert "\n" not in message
    assert f"is claimed by run {first.run_id} (pid {first.pid} on {first.host}" in message
    assert f"remove {tmp_path / 'out' / CLAIM_FILE}" in message
    release_claim(out, first.run_id)
    assert read_claim(out) is None
    assert take_claim(out).run_id != first.run_id


def _try(out: str, queue: multiprocessing.Queue, done: multiprocessing.Event) -> None:
    try:
        queue.put(take_claim(out).run_id)
    except ClaimedOutputError:
        queue.put(None)
    done.wait(30)  # a job holds its claim while it lives (a dead holder's claim is stale)


def test_of_several_processes_claiming_at_once_exactly_one_wins(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    context = multiprocessing.get_context("fork")
    queue, done = context.Queue(), context.Event()
    procs = [context.Process(target=_try, args=(out, queue, done)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=30) for _ in procs]
    done.set()
    for p in procs:
        p.join(30)
    winners = [r for r in results if r]
    assert len(winners) == 1 and read_claim(out).run_id == winners[0]


def test_a_stale_claim_of_a_dead_process_on_this_host_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = multiprocessing.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()
    stale = Claim(run_id="a" * 32, host=socket.gethostname(), pid=dead.pid, started="then")
    (out / CLAIM_FILE).write_bytes(stale.to_json())
    assert take_claim(str(out)).run_id != stale.run_id
    # A claim from another host is never guessed stale.
    (out / CLAIM_FILE).write_bytes(Claim("b" * 32, "elsewhere", dead.pid, "then").to_json())
    with pytest.raises(ClaimedOutputError, match="claimed by run b{32}"):
        take_claim(str(out))


def test_check_and_release_act_only_on_this_runs_claim(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    claim = take_claim(out)
    check_claim(out, claim.run_id)
    with pytest.raises(ClaimLostError, match=f"run {'c' * 32} lost its claim \\(claimed by run {claim.run_id} now\\)"):
        check_claim(out, "c" * 32)
    release_claim(out, "c" * 32)  # not ours: left alone
    assert read_claim(out) == claim
    release_claim(out, claim.run_id)
    with pytest.raises(ClaimLostError, match="no claim now"):
        check_claim(out, claim.run_id)


def test_claims_work_on_fsspec_urls() -> None:
    out = "memory://claim-test/out"
    claim = take_claim(out)
    with pytest.raises(ClaimedOutputError):
        take_claim(out)
    release_claim(out, claim.run_id)
    assert read_claim(out) is None


def test_an_unreadable_claim_counts_as_held(tmp_path: Path) -> None:
    (tmp_path / CLAIM_FILE).write_text("{half")
    with pytest.raises(ClaimedOutputError, match=r"claimed by run \?"):
        take_claim(str(tmp_path))
