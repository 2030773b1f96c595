"""The end-to-end benchmark: its synthetic inputs look like the real ones, and a tiny run
prints every figure."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.synthetic import make_dataset, pong_frames
from planning.plan import plan_work
from formats.tfds_shards import ShardReader, read_shard

ROOT = Path(__file__).resolve().parents[2]


def _png_size(frame: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(frame[:, :, 0]).save(buffer, format="PNG")
    return buffer.tell()


def test_pong_frames_compress_like_real_frames_not_noise() -> None:
    frames = pong_frames(50, seed=3)
    assert frames.shape == (50, 84, 84, 1) and frames.dtype == np.uint8
    assert np.array_equal(frames, pong_frames(50, seed=3))  # deterministic in the seed
    assert not np.array_equal(frames[0], frames[1])  # things move
    sizes = [_png_size(f) for f in frames]
    noise = _png_size(np.random.default_rng(0).integers(0, 256, (84, 84, 1), dtype=np.uint8))
    # Real Pong frames are a few hundred bytes of PNG; 84x84 noise is ~7 KB.
    assert max(sizes) < 1000 and noise > 7000


def test_datasets_plan_as_the_registry_entries_and_are_cached(tmp_path: Path) -> None:
    atari = make_dataset("atari", cache_dir=tmp_path, episodes=3, steps=5, episodes_per_shard=2)
    plan = plan_work("atari", data_dir=atari.data_dir)
    assert plan.tasks == ["rlu_atari/Pong_run_1"] and len(plan.work_items) == 2
    reader = ShardReader(plan.work_items[0].builder_dir)
    episodes = [e for item in plan.work_items for e in read_shard(item, reader=reader, spec=plan.dataset)]
    assert [e.key.episode_id for e in episodes] == ["0/0", "1/1", "2/2"]
    assert all(e.steps["observation"][0][:4] == b"\x89PNG" for e in episodes)
    assert atari.timesteps == 12
    marker = Path(atari.data_dir) / "DONE"
    before = marker.stat().st_mtime_ns
    again = make_dataset("atari", cache_dir=tmp_path, episodes=3, steps=5, episodes_per_shard=2)
    assert again == atari and marker.stat().st_mtime_ns == before  # reused, not rewritten

    control = make_dataset("control_suite", cache_dir=tmp_path, episodes=1, steps=4, episodes_per_shard=1)
    fields = plan_work("control_suite", data_dir=control.data_dir).task_fields
    assert sorted(fields["rlu_control_suite/walker_walk"]) == [
        "action", "observation/height", "observation/orientations", "observation/velocity",
    ]
    babyai = make_dataset("babyai", cache_dir=tmp_path, episodes=1, steps=4, episodes_per_shard=1)
    assert babyai.sentencepiece_model and Path(babyai.sentencepiece_model).stat().st_size > 0


def test_quick_run_prints_every_figure(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_pipeline.py"), "--quick",
         "--cache_dir", str(tmp_path), "--kinds", "control_suite", "--repeat", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    number = r"-?[\d.]+"
    assert any(
        re.fullmatch(rf"control_suite: marginal full/floor {number}x, full {number} us/ts, floor {number} us/ts, "
                     rf"fixed {number} s", line)
        for line in lines
    ), out.stdout
    assert any(line.startswith("  full job: 1 episode ") and "8 x 40 (312 ts)" in line for line in lines), out.stdout
    assert any(re.fullmatch(rf"  floor per timestep: read {number} us, decode {number} us \(0 frames, none\), "
                            rf"write {number} us", line) for line in lines), out.stdout
    assert any(re.fullmatch(r"  marginal full/floor: -?[\d.]+x \(target <= 2.0x\) (OK|MISSED)", line) for line in lines)
    assert any(re.fullmatch(rf"  with one decode of the stored records \({number} us, the job's decoder\): "
                            rf"floor {number} us/ts, marginal full/that {number}x", line) for line in lines), out.stdout
