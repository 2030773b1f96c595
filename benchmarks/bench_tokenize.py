"""Tokenization speed on one core, each figure beside a plain-Python per-value loop.

    python benchmarks/bench_tokenize.py            # full run (about a minute)
    python benchmarks/bench_tokenize.py --quick    # smoke run (seconds)

Figures (best of several repeats, so scheduler noise from shared machines is dropped):
- continuous values tokenized per second (mu_law and linear), target >= 30 million;
- 84x84x1 frames padded and patchified per second, target >= 50,000;
- whole control-suite-like episodes (1000 steps, 24 floats + 6 actions) per second.
The baselines do the same work value by value in Python (same formulas, same output).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np  # noqa: E402

from schemas import fields as F  # noqa: E402
from schemas.vocab import (  # noqa: E402
    GATO,
    LOCAL_POSITION_TABLE,
    MU,
    MU_LAW_M,
    NUM_BINS,
    PATCH_SIZE,
    Encoding,
    Modality,
)
from transforms.continuous import encode_continuous  # noqa: E402
from transforms.images import image_patches  # noqa: E402
from transforms.tokenize import tokenize_episode  # noqa: E402

from benchmarks.timing import best_seconds  # noqa: E402

_LOG_MU_M = math.log1p(MU * MU_LAW_M)
_OFFSET = GATO.continuous_offset


# --- Plain-Python per-value baselines (same formulas as the spec, one value at a time). ---


def py_continuous(values: list[float], mu_law: bool) -> list[int]:
    out = []
    for x in values:
        if not math.isfinite(x):
            raise ValueError(x)
        f = math.copysign(math.log1p(MU * abs(x)) / _LOG_MU_M, x) if mu_law else x
        f = min(max(f, -1.0), 1.0)
        out.append(_OFFSET + min(int((f + 1.0) * (NUM_BINS / 2)), NUM_BINS - 1))
    return out


def py_patchify(frame: list[list[int]], height: int, width: int) -> list[list[int]]:
    """One HxW (C=1) frame as nested lists -> padded 16x16 patches in raster order."""
    rows, cols = -(-height // PATCH_SIZE), -(-width // PATCH_SIZE)
    patches = []
    for r in range(rows):
        for c in range(cols):
            patch = []
            for y in range(r * PATCH_SIZE, (r + 1) * PATCH_SIZE):
                for x in range(c * PATCH_SIZE, (c + 1) * PATCH_SIZE):
                    patch.append(frame[y][x] if y < height and x < width else 0)
            patches.append(patch)
    return patches


def py_episode(obs: list[list[float]], act: list[list[float]]) -> tuple[list, ...]:
    tokens, modality, local, loss, timestep = [], [], [], [], []
    action_position = LOCAL_POSITION_TABLE - 1
    for t, (o, a) in enumerate(zip(obs, act)):
        for i, tok in enumerate(py_continuous(o, True)):
            tokens.append(tok), modality.append(int(Modality.CONTINUOUS))
            local.append(i), loss.append(False), timestep.append(t)
        tokens.append(GATO.separator), modality.append(int(Modality.SEPARATOR))
        local.append(action_position), loss.append(False), timestep.append(t)
        for tok in py_continuous(a, False):
            tokens.append(tok), modality.append(int(Modality.CONTINUOUS))
            local.append(action_position), loss.append(True), timestep.append(t)
    return tokens, modality, local, loss, timestep


def report(name: str, unit: str, fast: float, slow: float, target: float | None) -> None:
    verdict = "" if target is None else ("  [meets target]" if fast >= target else "  [BELOW TARGET]")
    target_text = "" if target is None else f", target {target:,.0f}"
    print(f"{name}: {fast:,.0f} {unit}/s (numpy) vs {slow:,.0f} {unit}/s (Python loop), "
          f"ratio {fast / slow:,.0f}x{target_text}{verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # one core: the figures are per core
    quick = args.quick
    repeats = 2 if quick else 7
    rng = np.random.default_rng(0)
    print(f"one core (affinity {sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}), "
          f"numpy {np.__version__}, best of {repeats}")

    # Continuous: a large float32 buffer, as an episode's observations arrive.
    n = 100_000 if quick else 10_000_000
    values = (rng.standard_normal(n) * 10).astype(np.float32)
    sample = values[: 2_000 if quick else 200_000].tolist()
    for encoding in Encoding:
        fast = n / best_seconds(lambda: encode_continuous(values, encoding), repeats)
        mu_law = encoding is Encoding.MU_LAW
        slow = len(sample) / best_seconds(lambda: py_continuous(sample, mu_law), max(1, repeats // 3))
        report(f"continuous ({encoding.value})", "values", fast, slow, 30e6)

    # Images: Atari-like 84x84 grayscale frames, padded to 96x96, 36 patches each.
    frames_n = 200 if quick else 20_000
    frames = rng.integers(0, 256, (frames_n, 84, 84), dtype=np.uint8)
    fast = frames_n / best_seconds(lambda: image_patches(frames), repeats)
    py_frames = [f.tolist() for f in frames[: 2 if quick else 20]]
    slow = len(py_frames) / best_seconds(
        lambda: [py_patchify(f, 84, 84) for f in py_frames], max(1, repeats // 3)
    )
    report("84x84x1 frames patchified", "frames", fast, slow, 50_000)

    # Whole episode: 1000 steps of 24 mu_law observations and 6 linear actions.
    steps_n = 1000
    obs = rng.standard_normal((steps_n, 24))
    act = rng.uniform(-1, 1, (steps_n, 6))
    steps = {"observation": {"state": obs}, "action": act}
    specs = {"observation/state": F.continuous("mu_law"), "action": F.continuous("linear")}
    episodes = 3 if quick else 50

    def run_episodes() -> None:
        for _ in range(episodes):
            tokenize_episode(steps, specs)

    fast = episodes / best_seconds(run_episodes, repeats)
    obs_list, act_list = obs.tolist(), act.tolist()
    slow = 1 / best_seconds(lambda: py_episode(obs_list, act_list), max(1, repeats // 3))
    report("episodes (1000 steps, 24 obs + 6 act)", "episodes", fast, slow, None)
    tokens_per_episode = steps_n * (24 + 1 + 6)
    print(f"  = {fast * tokens_per_episode:,.0f} tokens/s with all per-token columns")


if __name__ == "__main__":
    main()
