"""The fault suite's tools: a small RLDS dataset, ways to damage it, the real CLI, and the
checks every fault must pass (issue 13: nothing lost, nothing mixed).

A source is written with TFDS's own writer (`tests/tfds_fixtures.py`), then damaged on
disk the way a failed copy, a hand-edited `features.json` or a buggy recorder would:
bytes flipped or cut, records re-framed with a changed tf.train.Example, metadata edited.
`check_output` then reads what the job wrote with nothing but pyarrow and json, so it
trusts none of the code under test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from formats.tfrecord import frame_record, iter_records
from tests import tfds_fixtures as fx

REPO = Path(__file__).resolve().parents[2]
NAME, CONFIG = "fault_robot", "stack"
TASK = f"{NAME}/{CONFIG}"
NUM_EPISODES = 8
NUM_SHARDS = 2
RUN_TIMEOUT = 300
CLAIM_FILE = "_claim.json"  # schemas.output.CLAIM_FILE, spelled here so the checks trust no code under test


@dataclasses.dataclass(frozen=True)
class Source:
    """A dataset on disk and how many episodes its metadata promises per task."""

    root: Path
    episodes: Mapping[str, int]  # task -> episodes written (what read must add up to)

    @property
    def dataset(self) -> str:
        return f"rlds:{self.root}"


def episode(episode_id: int, *, num_steps: int | None = None, is_last: bool = True) -> dict[str, Any]:
    """Episode `episode_id` of the fault dataset: longer episodes have larger returns
    (rewards 0, 1, ..., so the return is n(n-1)/2), so the filter keeps the long ones."""
    return fx.novel_episode(episode_id, 4 + episode_id if num_steps is None else num_steps, is_last=is_last)


def write_source(root: Path, episodes: Sequence[dict[str, Any]], *, config: str = CONFIG) -> Path:
    """The episodes as one TFDS config under `root`; returns the builder dir."""
    return fx.write_rlds_dataset(root, NAME, config, fx.novel_features(), episodes, num_shards=NUM_SHARDS)


def clean_source(root: Path) -> tuple[Source, Path]:
    builder = write_source(root, [episode(i) for i in range(NUM_EPISODES)])
    return Source(root, {TASK: NUM_EPISODES}), builder


def shards(builder: Path) -> list[Path]:
    return fx.shard_files(builder)


# --- Damage --------------------------------------------------------------------------------


def flip_bytes(path: Path, at: int, length: int = 4) -> None:
    fx.garble_file(path, at, length)


def rewrite_records(path: Path, change: Callable[[int, bytes], bytes | None]) -> None:
    """Re-frame every record of a shard (valid checksums), each replaced by `change(index,
    data)`; None drops the record."""
    with open(path, "rb") as f:
        records = list(iter_records(f))
    out = bytearray()
    for index, data in enumerate(records):
        new = change(index, data)
        if new is not None:
            out += frame_record(new)
    path.write_bytes(bytes(out))


def change_example(path: Path, record: int, edit: Callable[[Any], None]) -> None:
    """Apply `edit(tf.train.Example)` to one record of a shard, keeping the framing valid."""
    from tensorflow.core.example import (
        example_pb2,  # the proto only, not TensorFlow's runtime
    )

    def change(index: int, data: bytes) -> bytes:
        if index != record:
            return data
        example = example_pb2.Example()
        example.ParseFromString(data)
        edit(example)
        return example.SerializeToString()

    rewrite_records(path, change)


def edit_json(path: Path, edit: Callable[[Any], None]) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document, indent=2))


# --- Running the CLI -----------------------------------------------------------------------


def cli_args(source: Source, output_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "beam_runner.py"), f"--dataset={source.dataset}",
            f"--output_dir={output_dir}", "--log_level=WARNING", *extra]


def run_cli(source: Source, output_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_args(source, output_dir, *extra), cwd=REPO, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def start_cli(source: Source, output_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """The CLI in its own process group, so a kill reaches Beam's workers too."""
    return subprocess.Popen(cli_args(source, output_dir, *extra), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_group(process: subprocess.Popen[str]) -> None:
    """kill -9 of the process and everything it started; waits for it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate(timeout=60)


def wait_then_kill(process: subprocess.Popen[str], seconds: float) -> bool:
    """Kill the CLI after `seconds` unless it finished first; True if it was killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            process.communicate()
            return False
        time.sleep(0.05)
    kill_group(process)
    return True


# --- Checks --------------------------------------------------------------------------------


def file_hashes(output_dir: Path) -> dict[str, str]:
    """sha256 of every file under `output_dir`, by relative path."""
    return {
        str(p.relative_to(output_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(output_dir.rglob("*")) if p.is_file()
    }


def check_output(output_dir: Path, source: Source) -> list[str]:
    """What a finished output promises (issue 13), as a list of broken promises."""
    manifest_path = output_dir / "manifest.json"
    if not manifest_path.exists():
        return [f"no manifest.json in {output_dir}"]
    manifest = json.loads(manifest_path.read_text())
    problems = _manifest_matches_files(output_dir, manifest)
    stats = json.loads((output_dir / manifest["stats"]["json"]).read_text())
    by_task = {record["task"]: record for record in stats["tasks"]}
    for task, expected in source.episodes.items():
        record = by_task.get(task)
        if record is None:
            if expected:
                problems.append(f"task {task}: no statistics for {expected} source episodes")
            continue
        read, kept, dropped, rejected = (record[k] for k in ("episodes_read", "kept", "dropped", "rejected"))
        if not read == kept + dropped + rejected == expected:
            problems.append(f"task {task}: read {read} = kept {kept} + dropped {dropped} + "
                            f"rejected {rejected}, but the source holds {expected} episodes")
    for row in _rejects(output_dir, manifest):
        where = row["episode_id"] is not None or "record" in (row["detail"] or "")
        if not (row["source_file"] and row["reason"] and where):
            problems.append(f"a reject does not name file, episode (or record) and reason: {row}")
    return problems


def _manifest_matches_files(output_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    problems = []
    listed = [s["path"] for s in (*manifest["shards"], *manifest["rejects"])]
    if len(set(listed)) != len(listed):
        problems.append("the manifest lists a shard twice")
    for shard in (*manifest["shards"], *manifest["rejects"]):
        path = output_dir / shard["path"]
        if not path.exists():
            problems.append(f"listed shard {shard['path']} is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != shard["sha256"]:
            problems.append(f"listed shard {shard['path']} does not have its sha256")
        elif pq.ParquetFile(path).metadata.num_rows != shard["rows"]:
            problems.append(f"listed shard {shard['path']} does not have its row count")
    on_disk = {str(p.relative_to(output_dir)) for p in output_dir.rglob("*.parquet")
               if p.parts[len(output_dir.parts)] in ("sequences", "rejects")}
    unlisted = sorted(on_disk - set(listed))
    if unlisted:
        problems.append(f"shards on disk the manifest does not list: {unlisted[:3]}")
    return problems


def _rejects(output_dir: Path, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for shard in manifest["rejects"]:
        rows.extend(pq.read_table(output_dir / shard["path"]).to_pylist())
    return rows


def rejects_by_reason(output_dir: Path) -> dict[str, int]:
    manifest = json.loads((output_dir / "manifest.json").read_text())
    counts: dict[str, int] = {}
    for row in _rejects(output_dir, manifest):
        counts[row["reason"]] = counts.get(row["reason"], 0) + 1
    return counts


def finished_and_deterministic(source: Source, output_dir: Path, *extra: str) -> list[str]:
    """Run, check, rerun into the same (emptied) directory: the files must be identical."""
    first = run_cli(source, output_dir, *extra)
    if first.returncode != 0:
        return [f"the job failed: {_last_line(first)}"]
    problems = check_output(output_dir, source)
    hashes = file_hashes(output_dir)
    _remove_tree(output_dir)
    second = run_cli(source, output_dir, *extra)
    if second.returncode != 0:
        return [*problems, f"the rerun failed: {_last_line(second)}"]
    again = file_hashes(output_dir)
    if again != hashes:
        changed = sorted(k for k in set(hashes) | set(again) if hashes.get(k) != again.get(k))
        problems.append(f"a rerun wrote different files: {changed[:5]}")
    return problems


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {result.returncode}"


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def float_values(example: Any, key: str) -> list[float]:
    return list(example.features.feature[key].float_list.value)


def set_float_values(example: Any, key: str, values: Sequence[float]) -> None:
    feature = example.features.feature[key].float_list
    del feature.value[:]
    feature.value.extend(np.asarray(values, dtype=np.float32).tolist())
