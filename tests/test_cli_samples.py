"""`python beam_runner.py --dataset=<name>` on the bundled samples, checked row by row.

Every registry dataset runs through the real CLI with no flags but the output dir (the
bundled samples are the default data dir; no network). On Meta-World the output is
then decoded back and compared with the episodes TFDS reads from the same files: every
sequence has length L, whole timesteps, padding only at the end, the separator before
the actions at local position 511, the loss mask on actions only, and prompts that are
whole-timestep windows of another kept episode of the same task.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds

from planning.options import SAMPLES_DATA_DIR
from schemas.datasets import get_dataset
from schemas.output import MANIFEST_FILE, NO_TIMESTEP
from schemas.vocab import GATO, LOCAL_POSITION_TABLE, Modality
from transforms.continuous import mu_law_encode
from transforms.decode import decode_episode

REPO = Path(__file__).resolve().parent.parent
ACTION_POSITION = LOCAL_POSITION_TABLE - 1


def run_job(dataset: str, output: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(REPO / "beam_runner.py"), f"--dataset={dataset}", f"--output_dir={output}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "reading the bundled samples" in result.stderr
    return json.loads((output / MANIFEST_FILE).read_text())


@pytest.mark.parametrize("dataset", ["atari", "dmlab", "control_suite", "metaworld", "babyai"])
def test_every_dataset_runs_on_the_samples(dataset: str, tmp_path: Path) -> None:
    manifest = run_job(dataset, tmp_path)
    assert manifest["shards"], "no sequences written"
    rows = 0
    for shard in manifest["shards"]:
        table = pq.read_table(tmp_path / shard["path"])
        assert table.num_rows == shard["rows"]
        assert int(np.sum(table.column("num_tokens").to_numpy())) == shard["tokens"]
        rows += table.num_rows
    stats = json.loads((tmp_path / "stats" / "stats.json").read_text())["tasks"]
    assert {t["task"] for t in stats} == {s["task"] for s in manifest["shards"]}
    for task in stats:
        assert task["kept"] + task["dropped"] + task["rejected"] == task["episodes_read"] > 0
        assert task["rejected"] == 0  # the samples are clean
    assert sum(t["sequences"] for t in stats) == rows
    # The dataset's Table 1 share of the whole mix, not rescaled within the output.
    assert manifest["sampling_weights"][dataset]["weight"] == get_dataset(dataset).sample_weight


@pytest.fixture(scope="module")
def metaworld_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("metaworld")
    return out, run_job("metaworld", out, "--sequence_length=512")


def _rows_by_episode(out: Path, manifest: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    rows: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for shard in manifest["shards"]:
        for row in pq.read_table(out / shard["path"]).to_pylist():
            rows[(row["task"], row["episode_id"])].append(row)
    return {k: sorted(v, key=lambda r: r["sequence_index"]) for k, v in rows.items()}


def _source_episodes(task: str) -> dict[str, dict[str, Any]]:
    builder = tfds.builder_from_directory(f"{SAMPLES_DATA_DIR}/{task}/1.0.0")
    episodes = {}
    for episode in tfds.as_numpy(builder.as_dataset(split="train")):
        steps = list(episode["steps"])  # a tf.data dataset of steps, as numpy
        episodes[str(episode["episode_id"])] = {
            "observation/state": np.stack([s["observation"]["state"] for s in steps[:-1]]),
            "action": np.stack([s["action"] for s in steps[:-1]]),
            "order": int(episode["episode_id"]),
            "return": float(episode["episode_return"]),
        }
    return episodes


def brute_force_keeps(returns_in_order: list[float], fraction: float = 0.8) -> list[bool]:
    """Spec section 4 written out plainly, with no shared code."""
    n = len(returns_in_order)
    w = max(1, min(1000, n // 10))
    expert = max(sum(returns_in_order[j : j + w]) / w for j in range(n - w + 1))
    return [r >= expert - (1 - fraction) * abs(expert) for r in returns_in_order]


def test_kept_episodes_are_exactly_the_brute_force_ones(
    metaworld_output: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = metaworld_output
    written = {key for key in _rows_by_episode(out, manifest)}
    stats = json.loads((out / "stats" / "stats.json").read_text())["tasks"]
    for task in stats:
        sources = _source_episodes(task["task"])
        order = sorted(sources, key=lambda e: sources[e]["order"])
        keeps = brute_force_keeps([sources[e]["return"] for e in order])
        expected = {(task["task"], e) for e, keep in zip(order, keeps) if keep}
        assert {k for k in written if k[0] == task["task"]} == expected
        assert task["kept"] == len(expected) and task["episodes_read"] == len(order)


def test_sequences_decode_back_to_the_episodes(metaworld_output: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = metaworld_output
    length = manifest["sequence_length"]
    specs = get_dataset("metaworld").field_specs
    by_episode = _rows_by_episode(out, manifest)
    sources = {task: _source_episodes(task) for task in {task for task, _ in by_episode}}
    for (task, episode_id), rows in by_episode.items():
        original = sources[task][episode_id]
        seen_timesteps: list[int] = []
        for row in rows:
            tokens, modality = np.array(row["tokens"]), np.array(row["modality"])
            timestep, positions = np.array(row["timestep"]), np.array(row["local_positions"])
            loss, prompt = np.array(row["loss_mask"]), np.array(row["is_prompt"])
            n = row["num_tokens"]
            assert tokens.shape == (length,)
            assert (modality[n:] == Modality.PAD).all() and (tokens[n:] == GATO.pad).all()
            assert (modality[:n] != Modality.PAD).all()
            assert not loss[prompt].any() and (timestep[prompt] == NO_TIMESTEP).all()
            body = timestep != NO_TIMESTEP
            steps = timestep[body]
            assert len(set(steps.tolist()) & set(seen_timesteps)) == 0, "a timestep was split"
            seen_timesteps.extend(sorted(set(steps.tolist())))
            # Within each timestep: 39 observation tokens at 0..38, separator, 4 actions at 511.
            for t in np.unique(steps):
                at = body & (timestep == t)
                assert modality[at].tolist() == [Modality.CONTINUOUS] * 39 + [Modality.SEPARATOR] + [Modality.CONTINUOUS] * 4
                assert positions[at].tolist() == list(range(39)) + [ACTION_POSITION] * 5
                assert loss[at].tolist() == [False] * 40 + [True] * 4
            shapes = manifest["field_shapes"]["metaworld"][task]  # what an auditor decodes with
            decoded = decode_episode(row, specs, shapes={p: tuple(v) for p, v in shapes.items()})
            state = mu_law_encode(decoded.fields["observation/state"])
            want = mu_law_encode(original["observation/state"][decoded.timesteps])
            assert np.abs(state - want).max() <= 1 / 1024 + 1e-12  # half a bin in F-space
            action = decoded.fields["action"] - original["action"][decoded.timesteps]
            assert np.abs(action).max() <= 1 / 1024 + 1e-12
        assert seen_timesteps == list(range(len(original["action"])))


def test_prompts_are_windows_of_other_kept_episodes(metaworld_output: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = metaworld_output
    by_episode = _rows_by_episode(out, manifest)
    # Each kept episode's own token stream, to find prompts in.
    streams = {
        key: np.concatenate([np.array(r["tokens"])[np.array(r["timestep"]) != NO_TIMESTEP] for r in rows])
        for key, rows in by_episode.items()
    }
    prompted = ends = total = 0
    for (task, episode_id), rows in by_episode.items():
        for row in rows:
            total += 1
            prompt = np.array(row["tokens"])[np.array(row["is_prompt"])]
            if prompt.size == 0:
                assert row["prompt_episode_id"] is None
                continue
            prompted += 1
            source = row["prompt_episode_id"]
            assert source != episode_id and (task, source) in streams, "prompt from a kept episode of the task"
            stream = streams[(task, source)]
            step = 44  # tokens per Meta-World timestep: whole timesteps only
            assert prompt.size % step == 0
            starts = [s for s in range(0, stream.size - prompt.size + 1, step)
                      if np.array_equal(stream[s : s + prompt.size], prompt)]
            assert starts, f"prompt of {task}/{episode_id} is not a window of episode {source}"
            ends += starts[-1] + prompt.size == stream.size
    assert 0.15 <= prompted / total <= 0.35, (prompted, total)
    assert 0.3 <= ends / prompted <= 0.8, (ends, prompted)
