"""One writer per output directory: the claim file `_claim.json` (issue 13).

`take_claim` creates `<output_dir>/_claim.json` with exclusive-create semantics (fsspec
`open(path, "xb")`: `O_EXCL` on local disk; gcsfs and s3fs implement it with a
does-not-exist precondition on the upload, so it holds on object stores too). The file
names the run id, the host, the process id and the start time. A second job finds it and
is refused with one line (`ClaimedOutputError`), unless the claim is stale: written on
this host by a process that no longer exists (a killed job), which is taken over.
`check_claim` (before the manifest is published) fails with `ClaimLostError` when the
claim no longer names this run; `release_claim` removes it at the end of the job.

The run id lives only in the claim and in the staging path (`formats/layout.py`), never
in a finished output's files: a healthy rerun writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import socket
import uuid

from formats.files import output_filesystem, raise_if_no_space
from schemas.output import CLAIM_FILE

log = logging.getLogger(__name__)


class ClaimedOutputError(ValueError):
    """Another job holds the output directory."""


class ClaimLostError(ValueError):
    """The claim of this run was removed or replaced while the job ran."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """Who writes an output directory. `run_id`: 32 hex digits."""

    run_id: str
    host: str
    pid: int
    started: str

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode("utf-8")

    def is_stale(self) -> bool:
        """True when the claim was made on this host by a process that is gone."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False


def claim_path(output_dir: str) -> str:
    fs, root = output_filesystem(output_dir)
    return f"{root.rstrip('/')}/{CLAIM_FILE}"


def new_claim() -> Claim:
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return Claim(run_id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid(), started=started)


def read_claim(output_dir: str) -> Claim | None:
    """The claim on `output_dir`, None when there is none. An unreadable claim file
    counts as held by an unknown job (run id "?")."""
    fs, _ = output_filesystem(output_dir)
    path = claim_path(output_dir)
    try:
        with fs.open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
        return Claim(run_id=str(data["run_id"]), host=str(data["host"]), pid=int(data["pid"]),
                     started=str(data["started"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return Claim(run_id="?", host="?", pid=-1, started="?")


def _refusal(output_dir: str, holder: Claim) -> ClaimedOutputError:
    return ClaimedOutputError(
        f"{output_dir} is claimed by run {holder.run_id} (pid {holder.pid} on {holder.host}, since "
        f"{holder.started}): another job is writing it; wait for that job, or, if no job is "
        f"running, remove {claim_path(output_dir)}"
    )


def take_claim(output_dir: str) -> Claim:
    """Claims `output_dir` for a new run (module docstring); returns the claim."""
    fs, root = output_filesystem(output_dir)
    path = claim_path(output_dir)
    with raise_if_no_space(path):
        fs.makedirs(root, exist_ok=True)
    claim = new_claim()
    for attempt in range(2):
        try:
            with raise_if_no_space(path), fs.open(path, "xb") as f:
                f.write(claim.to_json())
            return claim
        except FileExistsError:
            holder = read_claim(output_dir)
            if holder is None and attempt == 0:
                continue  # released meanwhile
            if holder is not None and holder.is_stale() and attempt == 0:
                log.warning("taking over the stale claim of run %s on %s (pid %d is gone)",
                            holder.run_id, output_dir, holder.pid)
                fs.rm(path)
                continue
            raise _refusal(output_dir, holder or Claim("?", "?", -1, "?")) from None
    raise _refusal(output_dir, read_claim(output_dir) or Claim("?", "?", -1, "?"))


def check_claim(output_dir: str, run_id: str) -> None:
    """Raises `ClaimLostError` unless the claim on `output_dir` names `run_id`."""
    holder = read_claim(output_dir)
    if holder is None or holder.run_id != run_id:
        now = "no claim" if holder is None else f"claimed by run {holder.run_id}"
        raise ClaimLostError(
            f"{output_dir}: run {run_id} lost its claim ({now} now): another job took the output "
            "directory, so this run did not publish its output"
        )


def release_claim(output_dir: str, run_id: str) -> None:
    """Removes the claim if it still names `run_id` (never another job's)."""
    holder = read_claim(output_dir)
    if holder is not None and holder.run_id == run_id:
        fs, _ = output_filesystem(output_dir)
        fs.rm(claim_path(output_dir))


def refuse_if_claimed(output_dir: str) -> None:
    """For writers outside a claimed run: `ClaimedOutputError` when a job holds `output_dir`."""
    holder = read_claim(output_dir)
    if holder is not None:
        raise _refusal(output_dir, holder)
