"""Small hand-built tokenized episodes for the sequencing, prompt and writer tests.

Each timestep is `[image patch tokens, continuous observation tokens, separator,
discrete action tokens]` (spec section 3), built directly with numpy so the tests do
not depend on the tokenizer. Observation values are kept so tests can decode back.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from schemas.vocab import GATO, LOCAL_POSITION_TABLE, PATCH_SIZE, Encoding, Modality, VocabLayout
from transforms.continuous import encode_continuous
from transforms.types import TokenizedEpisode

ACTION_POSITION = LOCAL_POSITION_TABLE - 1
CHANNELS = 3
PATCH_BYTES = PATCH_SIZE * PATCH_SIZE * CHANNELS


@dataclasses.dataclass(frozen=True)
class BuiltEpisode:
    episode: TokenizedEpisode
    observations: list[np.ndarray]  # per timestep, float64 values in [-1, 1] (linear)
    actions: list[np.ndarray]  # per timestep, int values in [0, 1024)


def patch_value(episode_seed: int, timestep: int, patch: int) -> int:
    """The fill byte of a patch: lets tests check patches travel with their tokens."""
    return (episode_seed * 31 + timestep * 7 + patch) % 256


def make_episode(
    obs_counts: list[int],
    *,
    actions: int = 1,
    patches: int = 0,
    seed: int = 0,
    layout: VocabLayout = GATO,
) -> BuiltEpisode:
    """An episode with `obs_counts[t]` continuous observation tokens at timestep t."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("tok", "mod", "pos", "loss", "ts")}
    pixels: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    starts = [0]
    patch_starts = [0]
    observations: list[np.ndarray] = []
    action_values: list[np.ndarray] = []
    for t, n_obs in enumerate(obs_counts):
        obs = rng.uniform(-1, 1, n_obs)
        act = rng.integers(0, 1024, actions)
        observations.append(obs)
        action_values.append(act)
        tok = np.concatenate(
            [
                np.full(patches, layout.image_placeholder),
                encode_continuous(obs, Encoding.LINEAR, layout=layout),
                [layout.separator],
                act + layout.discrete_offset,
            ]
        ).astype(np.int32)
        mod = np.concatenate(
            [
                np.full(patches, Modality.IMAGE),
                np.full(n_obs, Modality.CONTINUOUS),
                [Modality.SEPARATOR],
                np.full(actions, Modality.DISCRETE),
            ]
        ).astype(np.int8)
        n_before_sep = patches + n_obs
        pos = np.concatenate([np.arange(n_before_sep), np.full(1 + actions, ACTION_POSITION)])
        loss = np.concatenate([np.zeros(n_before_sep + 1, bool), np.ones(actions, bool)])
        parts["tok"].append(tok)
        parts["mod"].append(mod)
        parts["pos"].append(pos.astype(np.int32))
        parts["loss"].append(loss)
        parts["ts"].append(np.full(tok.shape[0], t, np.int32))
        starts.append(starts[-1] + tok.shape[0])
        patch_starts.append(patch_starts[-1] + patches)
        for p in range(patches):
            pixels.append(np.full(PATCH_BYTES, patch_value(seed, t, p), np.uint8))
            lo = p * 128 // max(patches, 1)
            hi = min((p + 1) * 128 // max(patches, 1), 127)
            positions.append(np.array([0, 127, lo, hi], np.int16))

    def cat(key: str, dtype: type) -> np.ndarray:
        return np.concatenate(parts[key]).astype(dtype) if parts[key] else np.zeros(0, dtype)

    episode = TokenizedEpisode(
        tokens=cat("tok", np.int32),
        modality=cat("mod", np.int8),
        local_positions=cat("pos", np.int32),
        loss_mask=cat("loss", bool),
        timestep=cat("ts", np.int32),
        timestep_starts=np.array(starts, np.int64),
        patch_pixels=np.concatenate(pixels) if pixels else np.zeros(0, np.uint8),
        patch_offsets=np.arange(len(pixels) + 1, dtype=np.int64) * PATCH_BYTES,
        patch_positions=np.stack(positions) if positions else np.zeros((0, 4), np.int16),
        patch_starts=np.array(patch_starts, np.int64),
    )
    return BuiltEpisode(episode, observations, action_values)


def check_sequences(
    batch, episode: TokenizedEpisode, *, length: int, layout: VocabLayout = GATO
) -> None:
    """Every invariant of `transforms.sequence` for one episode's rows (raises AssertionError)."""
    from schemas.output import NO_TIMESTEP

    assert batch.tokens.shape == (batch.num_sequences, length)
    assert batch.sequence_index.tolist() == list(range(batch.num_sequences))
    episode_parts = []
    next_timestep = 0
    for s in range(batch.num_sequences):
        n = int(batch.num_tokens[s])
        prompt = batch.is_prompt[s]
        # Layout of a row: prompt, then episode tokens, then padding.
        n_prompt = int(prompt.sum())
        assert prompt[:n_prompt].all() and not prompt[n_prompt:].any()
        assert (n_prompt > 0) == (batch.prompt_episode_id[s] is not None)
        assert batch.prompt_episode_id[s] != batch.episode_id
        pad = slice(n, length)
        assert (batch.tokens[s, pad] == layout.pad).all()
        assert (batch.modality[s, pad] == Modality.PAD).all()
        assert not batch.loss_mask[s, pad].any() and not batch.is_prompt[s, pad].any()
        assert (batch.timestep[s, pad] == NO_TIMESTEP).all()
        assert (batch.local_positions[s, pad] == 0).all()
        assert (batch.modality[s, :n] != Modality.PAD).all()
        assert not batch.loss_mask[s, :n_prompt].any()
        assert (batch.timestep[s, :n_prompt] == NO_TIMESTEP).all()
        # Episode tokens: whole timesteps, consecutive, continuing the previous row.
        steps = batch.timestep[s, n_prompt:n]
        assert steps.size > 0 and steps[0] == next_timestep
        assert (np.diff(steps) >= 0).all() and (np.diff(steps) <= 1).all()
        first, last = int(steps[0]), int(steps[-1])
        a, b = int(episode.timestep_starts[first]), int(episode.timestep_starts[last + 1])
        assert b - a == n - n_prompt, "a timestep was split"
        for name in ("tokens", "modality", "local_positions", "loss_mask", "timestep"):
            np.testing.assert_array_equal(
                getattr(batch, name)[s, n_prompt:n], getattr(episode, name)[a:b], err_msg=name
            )
        # The separator comes right before each timestep's actions.
        for row_modality in (batch.modality[s, n_prompt:n], batch.modality[s, :n_prompt]):
            sep = np.flatnonzero(row_modality == Modality.SEPARATOR)
            assert (row_modality[sep - 1] != Modality.SEPARATOR).all()
            after = np.append(sep[1:], row_modality.size)
            for i, j in zip(sep, after):
                assert (row_modality[i + 1 : j][: 1] == Modality.DISCRETE).all()
        # Patches: one per image token, episode ones equal the episode's.
        p0, p1 = int(batch.row_patch_starts[s]), int(batch.row_patch_starts[s + 1])
        assert p1 - p0 == int((batch.modality[s] == Modality.IMAGE).sum())
        ep0, ep1 = int(episode.patch_starts[first]), int(episode.patch_starts[last + 1])
        n_prompt_patches = int((batch.modality[s, :n_prompt] == Modality.IMAGE).sum())
        np.testing.assert_array_equal(
            batch.patch_positions[p0 + n_prompt_patches : p1], episode.patch_positions[ep0:ep1]
        )
        got = batch.patch_pixels[batch.patch_offsets[p0 + n_prompt_patches] : batch.patch_offsets[p1]]
        want = episode.patch_pixels[episode.patch_offsets[ep0] : episode.patch_offsets[ep1]]
        np.testing.assert_array_equal(got, want)
        episode_parts.append((a, b))
        next_timestep = last + 1
    assert next_timestep == episode.num_timesteps
    assert batch.row_patch_starts[-1] == batch.patch_positions.shape[0]
