"""Larger synthetic inputs for `bench_pipeline.py`, in the real TFDS formats, cached on disk.

Three kinds, each a TFDS data dir laid out as `<data_dir>/<tfds name>/<config>/<version>/`
so `planning.plan.plan_work(<dataset>, data_dir=...)` plans it like the real thing:

- `atari`: `rlu_atari/Pong_run_1` v1.3.0, 84x84x1 PNG frames drawn like Pong (flat
  background, walls, two paddles, a ball, score blocks) so they compress like real
  frames (a few hundred bytes each), not like noise.
- `control_suite`: `rlu_control_suite/walker_walk` v1.0.0, zlib float32 observation
  vectors (orientations 14, height 1, velocity 9) and a 6-d action in [-1, 1], smooth
  signals plus a little noise, no episode_return (like the real builder).
- `babyai`: `gato_babyai/BabyAI-GoToRedBall-v0` v1.0.0, a 7x7x3 symbolic grid, a
  direction, a mission string, and a SentencePiece model trained on the missions.

Everything is deterministic in (kind, scale, seed). A dataset is written once under
`<cache>/<kind>-x<scale>-<episodes>x<steps>/` and reused while its `DONE` marker exists.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: the fixtures live in tests/
    sys.path.insert(0, str(_ROOT))

from tests import tfds_fixtures as fx  # noqa: E402

KINDS = ("atari", "control_suite", "babyai")
_DONE = "DONE"
SENTENCEPIECE_MODEL = "missions.model"


@dataclasses.dataclass(frozen=True)
class SyntheticSet:
    """One cached dataset: what to pass to `plan_work` / `JobOptions`."""

    kind: str  # also the registry dataset name
    data_dir: str
    episodes: int
    steps: int  # RLDS steps per episode, the final is_last step included
    sentencepiece_model: str | None = None

    @property
    def timesteps(self) -> int:
        """Emitted timesteps (the is_last step of each episode is not emitted)."""
        return self.episodes * (self.steps - 1)


# --- Atari-like -------------------------------------------------------------------------


def pong_frames(num_steps: int, *, seed: int) -> np.ndarray:
    """uint8 [T, 84, 84, 1] Pong-like frames: flat shades, moving paddles and ball."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_steps)
    frames = np.full((num_steps, 84, 84, 1), 87, dtype=np.uint8)
    frames[:, 6:9] = 236  # top wall
    frames[:, 78:81] = 236  # bottom wall
    rows = np.arange(84)[None, :, None]
    cols = np.arange(84)[None, None, :]
    phase = rng.uniform(0, 2 * np.pi, 2)
    left = (40 + 25 * np.sin(t / 17.0 + phase[0])).astype(int)[:, None, None]
    right = (40 + 25 * np.sin(t / 11.0 + phase[1])).astype(int)[:, None, None]
    paddles = ((cols >= 8) & (cols < 10) & (rows >= left - 4) & (rows < left + 4)) | (
        (cols >= 74) & (cols < 76) & (rows >= right - 4) & (rows < right + 4)
    )
    # Ball bounces between the walls and paddles: a triangle wave in x and in y.
    bx = (10 + np.abs((t * 2 + rng.integers(0, 128)) % 128 - 64)).astype(int)[:, None, None]
    by = (10 + np.abs((t * 3 + rng.integers(0, 116)) % 116 - 58)).astype(int)[:, None, None]
    ball = (rows >= by) & (rows < by + 2) & (cols >= bx) & (cols < bx + 2)
    # Score blocks change rarely, like real score digits.
    score = np.minimum(t // 97, 9)[:, None, None]
    digits = (rows >= 1) & (rows < 5) & (((cols >= 20) & (cols < 20 + score)) | ((cols >= 60) & (cols < 64)))
    frames[..., 0][paddles] = 147
    frames[..., 0][ball] = 236
    frames[..., 0][digits] = 200
    return frames


def _atari_episode(episode: int, num_steps: int, *, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, episode])
    # An expert-ish player: returns 15..21 like late DQN checkpoints, so the filter keeps most.
    reward = np.zeros(num_steps, np.float32)
    points = rng.choice(num_steps - 1, size=min(num_steps - 1, 15 + episode % 7), replace=False)
    reward[points] = 1.0
    return {
        "checkpoint_id": episode % 5,
        "episode_id": episode,
        "episode_return": np.float32(reward.sum()),
        "steps": {
            "observation": pong_frames(num_steps, seed=seed * 100_003 + episode),
            "action": rng.integers(0, 6, num_steps),
            "reward": reward,
            **fx.flags(num_steps),
        },
    }


def _atari_features() -> Any:
    import tensorflow_datasets as tfds

    return fx.episode_features(
        {"observation": tfds.features.Image(shape=(84, 84, 1)), "action": np.int64},
        checkpoint_id=np.int64,
        episode_id=np.int64,
        episode_return=np.float32,
    )


# --- Control-suite-like -----------------------------------------------------------------

_WALKER_OBS = {"orientations": 14, "height": 1, "velocity": 9}
_WALKER_ACTIONS = 6


def _control_episode(episode: int, num_steps: int, *, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, episode])
    t = np.arange(num_steps, dtype=np.float32)[:, None]

    def smooth(n: int, scale: float) -> np.ndarray:
        freq = rng.uniform(0.01, 0.2, n).astype(np.float32)
        noise = rng.normal(0, 0.01, (num_steps, n)).astype(np.float32)
        return (scale * np.sin(t * freq + rng.uniform(0, 6.3, n)) + noise).astype(np.float32)

    reward = rng.uniform(0, 1, num_steps).astype(np.float32)
    return {
        "episode_id": episode,
        "timestamp": 1_600_000_000 + episode,
        "steps": {
            "observation": {k: smooth(n, 1.0 if k != "velocity" else 8.0) for k, n in _WALKER_OBS.items()},
            "action": np.clip(smooth(_WALKER_ACTIONS, 1.2), -1, 1),
            "reward": reward,
            **fx.flags(num_steps),
        },
    }


def _control_features() -> Any:
    import tensorflow_datasets as tfds

    zlib = tfds.features.Encoding.ZLIB
    return fx.episode_features(
        {
            "observation": {
                k: tfds.features.Tensor(shape=(n,), dtype=np.float32, encoding=zlib)
                for k, n in _WALKER_OBS.items()
            },
            "action": tfds.features.Tensor(shape=(_WALKER_ACTIONS,), dtype=np.float32),
        },
        episode_id=np.int64,
        timestamp=np.int64,
    )


# --- BabyAI-like ------------------------------------------------------------------------

_COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
_OBJECTS = ("ball", "box", "key", "door")


def _mission(episode: int) -> str:
    return f"go to the {_COLOURS[episode % 6]} {_OBJECTS[(episode // 6) % 4]}"


def _babyai_episode(episode: int, num_steps: int, *, seed: int) -> dict[str, Any]:
    base = fx.babyai_episode(episode, num_steps, seed=seed)
    base["steps"]["observation"]["mission"] = [_mission(episode)] * num_steps
    return base


def _sentencepiece_model(path: Path) -> None:
    import argparse

    from transforms.train_sentencepiece import train

    corpus = path.with_suffix(".txt")
    corpus.write_text("\n".join(_mission(e) for e in range(48)) * 4 + "\n")
    args = argparse.Namespace(
        inputs=[str(corpus)], vocab_size=300, model_type="unigram", character_coverage=1.0,
        no_byte_fallback=False, normalization="identity", input_sentence_size=0,
    )
    path.write_bytes(train(args))


# --- The cache ---------------------------------------------------------------------------

_LAYOUTS = {
    # kind: (tfds name, config, version, features, episode maker)
    "atari": ("rlu_atari", "Pong_run_1", "1.3.0", _atari_features, _atari_episode),
    "control_suite": ("rlu_control_suite", "walker_walk", "1.0.0", _control_features, _control_episode),
    "babyai": ("gato_babyai", "BabyAI-GoToRedBall-v0", "1.0.0", fx.babyai_features, _babyai_episode),
}


def make_dataset(
    kind: str, *, cache_dir: str | os.PathLike[str], episodes: int, steps: int,
    episodes_per_shard: int, seed: int = 0,
) -> SyntheticSet:
    """The dataset `kind` with `episodes` episodes of `steps` steps, written once under `cache_dir`.

    Shards hold `episodes_per_shard` episodes each, so 4x the episodes is 4x the shards
    of the same size (what scaling up a real dataset looks like).
    """
    if kind not in _LAYOUTS:
        raise ValueError(f"unknown synthetic kind {kind!r}; known: {list(KINDS)}")
    if episodes < 1 or steps < 2 or episodes_per_shard < 1:
        raise ValueError(f"need episodes >= 1, steps >= 2, episodes_per_shard >= 1 (got {episodes}, {steps}, "
                         f"{episodes_per_shard})")
    name, config, version, features, episode = _LAYOUTS[kind]
    root = Path(cache_dir) / f"{kind}-{episodes}x{steps}-per{episodes_per_shard}-seed{seed}"
    model = root / SENTENCEPIECE_MODEL if kind == "babyai" else None
    if not (root / _DONE).exists():
        if root.exists():
            shutil.rmtree(root)  # a half-written earlier attempt
        root.mkdir(parents=True)
        shards = max(1, -(-episodes // episodes_per_shard))
        fx.write_rlds_dataset(
            root, name, config, features(),
            (episode(e, steps, seed=seed) for e in range(episodes)),
            num_shards=shards, version=version,
        )
        if model is not None:
            _sentencepiece_model(model)
        shutil.rmtree(root / "downloads", ignore_errors=True)
        (root / _DONE).write_text("ok\n")
    return SyntheticSet(kind, str(root), episodes, steps, str(model) if model else None)
