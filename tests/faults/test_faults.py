"""The fault suite (issue 13): the real CLI on a small generated dataset with one fault
injected at a time. For every fault: the job finishes (or refuses cleanly), per task
read = kept + dropped + rejected equals the episodes in the source, every reject names
file, episode (or record) and reason, the manifest matches the files, and a rerun gives
byte-identical files. `conftest.py` prints one line per fault and `faults: N/N held`.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults import faults_lib as fl
from transforms.errors import CORRUPT_IMAGE, NON_FINITE
from transforms.rlds_rules import (
    CORRUPT_RECORD,
    DTYPE_MISMATCH,
    MISSING_RECORD,
    RLDS_IS_LAST,
    RLDS_NO_TIMESTEPS,
    SHAPE_MISMATCH,
)
from transforms.verdict import DUPLICATE_EPISODE_ID, NON_FINITE_RETURN

Fault = Callable[[Path], list[str]]
FAULTS: dict[str, Fault] = {}


def fault(name: str) -> Callable[[Fault], Fault]:
    def register(check: Fault) -> Fault:
        FAULTS[name] = check
        return check

    return register


def _damaged(tmp: Path, damage: Callable[[Path], None]) -> fl.Source:
    """The clean source with `damage(builder dir)` applied."""
    source, builder = fl.clean_source(tmp / "data")
    damage(builder)
    return source


def _with_reject(output: Path, *reasons: str) -> list[str]:
    found = fl.rejects_by_reason(output) if (output / "manifest.json").exists() else {}
    if not any(found.get(reason) for reason in reasons) and not (found and not reasons):
        return [f"expected a reject ({' or '.join(reasons) or 'any'}), found {found}"]
    return []


def _standard(tmp: Path, source: fl.Source, *reasons: str) -> list[str]:
    output = tmp / "out"
    problems = fl.finished_and_deterministic(source, output)
    return problems or _with_reject(output, *reasons)


# --- Damaged shards ---------------------------------------------------------------------------


@fault("corrupt data CRC")
def _data_crc(tmp: Path) -> list[str]:
    def damage(builder: Path) -> None:
        shard = fl.shards(builder)[0]
        offset = fl.fx.record_offsets(shard)[1]
        fl.flip_bytes(shard, offset + 12 + 40)  # inside the record's data: its data CRC fails

    return _standard(tmp, _damaged(tmp, damage), CORRUPT_RECORD)


@fault("corrupt length CRC")
def _length_crc(tmp: Path) -> list[str]:
    def damage(builder: Path) -> None:
        shard = fl.shards(builder)[0]
        fl.flip_bytes(shard, fl.fx.record_offsets(shard)[1] + 8)  # the length's own CRC

    return _standard(tmp, _damaged(tmp, damage), CORRUPT_RECORD)


@fault("truncated shard")
def _truncated(tmp: Path) -> list[str]:
    def damage(builder: Path) -> None:
        shard = fl.shards(builder)[0]
        fl.fx.truncate_file(shard, fl.fx.record_offsets(shard)[2] + 30)

    return _standard(tmp, _damaged(tmp, damage), CORRUPT_RECORD)


@fault("shard short of shardLengths")
def _short(tmp: Path) -> list[str]:
    def damage(builder: Path) -> None:
        shard = fl.shards(builder)[0]
        fl.fx.truncate_file(shard, fl.fx.record_offsets(shard)[2])  # exactly at a record boundary

    return _standard(tmp, _damaged(tmp, damage), MISSING_RECORD)


@fault("lying dtype")
def _lying_dtype(tmp: Path) -> list[str]:
    def declare_int(node: object) -> None:
        if isinstance(node, dict):
            tensor = node.get("joints", {}).get("tensor") if isinstance(node.get("joints"), dict) else None
            if tensor is not None:
                tensor["dtype"] = "int32"  # the records hold float32
            for value in node.values():
                declare_int(value)
        elif isinstance(node, list):
            for value in node:
                declare_int(value)

    return _standard(tmp, _damaged(tmp, lambda b: fl.edit_json(b / "features.json", declare_int)), DTYPE_MISMATCH)


@fault("corrupt PNG bytes")
def _corrupt_png(tmp: Path) -> list[str]:
    def garble_png(example: object) -> None:
        images = example.features.feature["steps/observation/camera/rgb"].bytes_list.value  # type: ignore[attr-defined]
        images[0] = b"\x89PNG\r\n\x1a\n" + b"not an image" * 4

    return _standard(tmp, _damaged(tmp, lambda b: fl.change_example(fl.shards(b)[0], 1, garble_png)), CORRUPT_IMAGE)


@fault("step field changes shape mid-episode")
def _shape_change(tmp: Path) -> list[str]:
    def cut_one_value(example: object) -> None:
        values = fl.float_values(example, "steps/observation/joints")
        fl.set_float_values(example, "steps/observation/joints", values[:-1])  # not T x 5 any more

    return _standard(tmp, _damaged(tmp, lambda b: fl.change_example(fl.shards(b)[1], 0, cut_one_value)), SHAPE_MISMATCH)


# --- Bad values, bad episodes ---------------------------------------------------------------


def _source_with(tmp: Path, changed: dict[int, dict]) -> fl.Source:
    episodes = [changed.get(i, fl.episode(i)) for i in range(fl.NUM_EPISODES)]
    fl.write_source(tmp / "data", episodes)
    return fl.Source(tmp / "data", {fl.TASK: fl.NUM_EPISODES})


def _with_reward(episode_id: int, value: float) -> dict:
    episode = fl.episode(episode_id)
    episode["steps"]["reward"] = episode["steps"]["reward"].copy()
    episode["steps"]["reward"][1] = value
    return episode


@fault("NaN return")
def _nan_return(tmp: Path) -> list[str]:
    return _standard(tmp, _source_with(tmp, {3: _with_reward(3, math.nan)}), NON_FINITE_RETURN)


@fault("inf return")
def _inf_return(tmp: Path) -> list[str]:
    return _standard(tmp, _source_with(tmp, {4: _with_reward(4, math.inf)}), NON_FINITE_RETURN)


@fault("NaN observation in the best episode")
def _nan_observation(tmp: Path) -> list[str]:
    best = fl.NUM_EPISODES - 1  # the longest episode: by far the largest return
    episode = fl.episode(best)
    episode["steps"]["observation"]["joints"] = episode["steps"]["observation"]["joints"].copy()
    episode["steps"]["observation"]["joints"][2, 1] = math.nan
    output = tmp / "out"
    problems = _standard(tmp, _source_with(tmp, {best: episode}), NON_FINITE)
    if not problems:
        stats = json.loads((output / "stats" / "stats.json").read_text())["tasks"][0]
        # E over the valid episodes only: the rejected one's return must not set it.
        if stats["kept"] == 0 or stats["expert_return"] >= sum(range(4 + best)):
            problems.append(f"the rejected episode set the expert return: {stats['expert_return']}")
    return problems


@fault("duplicate episode ids")
def _duplicate_ids(tmp: Path) -> list[str]:
    twin = fl.episode(6)
    twin["episode_id"] = 2
    return _standard(tmp, _source_with(tmp, {6: twin}), DUPLICATE_EPISODE_ID)


@fault("episode with no emitted step")
def _no_steps(tmp: Path) -> list[str]:
    return _standard(tmp, _source_with(tmp, {5: fl.episode(5, num_steps=1)}), RLDS_NO_TIMESTEPS)


@fault("missing is_last")
def _missing_is_last(tmp: Path) -> list[str]:
    return _standard(tmp, _source_with(tmp, {3: fl.episode(3, is_last=False)}), RLDS_IS_LAST)


@fault("task with no episodes")
def _empty_task(tmp: Path) -> list[str]:
    source, _ = fl.clean_source(tmp / "data")
    empty = fl.write_source(tmp / "data", [fl.episode(0), fl.episode(1)], config="empty")
    for shard in fl.shards(empty):
        shard.unlink()

    def no_shards(info: dict) -> None:
        for split in info["splits"]:
            split["shardLengths"] = []
            split["numBytes"] = "0"

    fl.edit_json(empty / "dataset_info.json", no_shards)
    source = fl.Source(source.root, {**source.episodes, f"{fl.NAME}/empty": 0})
    return fl.finished_and_deterministic(source, tmp / "out")


# --- The output directory ------------------------------------------------------------------


@fault("two concurrent jobs")
def _concurrent(tmp: Path) -> list[str]:
    source, _ = fl.clean_source(tmp / "data")
    output = tmp / "out"
    jobs = [fl.start_cli(source, output, f"--seed={seed}") for seed in (1, 2)]
    results = [(job, *job.communicate(timeout=fl.RUN_TIMEOUT)) for job in jobs]
    finished = [i for i, (job, _, _) in enumerate(results) if job.returncode == 0]
    problems = []
    if len(finished) != 1:
        problems.append(f"{len(finished)} of 2 concurrent jobs finished; exactly one may write a directory")
    for job, _, stderr in results:
        if job.returncode != 0 and "Traceback" in stderr:
            problems.append("the refused job ended with a traceback, not a one-line error")
    if len(finished) == 1:
        problems += fl.check_output(output, source)
        hashes = fl.file_hashes(output)
        fl._remove_tree(output)
        alone = fl.run_cli(source, output, f"--seed={(1, 2)[finished[0]]}")
        if alone.returncode != 0 or fl.file_hashes(output) != hashes:
            problems.append("the finished output differs from the same job run alone")
    return problems


@fault("kill -9 at random points")
def _kill(tmp: Path) -> list[str]:
    source, _ = fl.clean_source(tmp / "data")
    output = tmp / "out"
    started = time.monotonic()
    clean = fl.run_cli(source, output)
    duration = time.monotonic() - started
    if clean.returncode != 0:
        return [f"the clean job failed: {clean.stderr[-300:]}"]
    expected = fl.file_hashes(output)
    problems = []
    rng = random.Random(13)
    for point in sorted(rng.uniform(0.2, 0.95) * duration for _ in range(3)):
        fl._remove_tree(output)
        fl.wait_then_kill(fl.start_cli(source, output), point)
        if (output / "manifest.json").exists():
            # Killed after it published (or it finished first): then it must be the job's
            # output exactly; a claim the kill left behind is no output file.
            finished = {k: v for k, v in fl.file_hashes(output).items() if k != fl.CLAIM_FILE}
            if finished != expected:
                problems.append(f"killed at {point:.1f} s: the output looks finished but is not the job's")
            continue  # a rerun is rightly refused without --overwrite
        rerun = fl.run_cli(source, output)
        if rerun.returncode != 0:
            problems.append(f"killed at {point:.1f} s: the rerun failed: {rerun.stderr.strip()[-300:]}")
        elif fl.file_hashes(output) != expected:
            problems.append(f"killed at {point:.1f} s: the rerun's files differ from a clean run's")
    return problems


@fault("a failing --overwrite run")
def _failing_overwrite(tmp: Path) -> list[str]:
    source, _ = fl.clean_source(tmp / "data")
    output = tmp / "out"
    if fl.run_cli(source, output).returncode != 0:
        return ["the first job failed"]
    manifest = (output / "manifest.json").read_bytes()
    bad = _source_with(tmp / "bad", {3: _with_reward(3, math.nan)})
    failing = fl.run_cli(bad, output, "--overwrite", "--strict")
    problems = [] if failing.returncode != 0 else ["the --strict run on bad data did not fail"]
    if not (output / "manifest.json").exists() or (output / "manifest.json").read_bytes() != manifest:
        problems.append("a failed --overwrite run replaced or removed the finished output's manifest")
    else:
        problems += fl.check_output(output, source)
        from reader import GatoReader, ReaderOptions

        batch = next(iter(GatoReader([str(output)], ReaderOptions(seed=0, prefetch=0)).batches(2)))
        if batch["tokens"].shape[0] != 2:
            problems.append("the old output cannot be read after the failed run")
    return problems


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(name: str, tmp_path: Path) -> None:
    problems = FAULTS[name](tmp_path)
    assert problems == [], f"{name}: " + "; ".join(problems)
