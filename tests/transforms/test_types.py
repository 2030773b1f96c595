"""transforms/types.py: a TokenizedEpisode's counts come from its arrays (T = len(timestep_starts) - 1)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.sequence_fixtures import make_episode
from transforms.types import TokenizedEpisode


def _empty(timesteps: int, tokens: int) -> TokenizedEpisode:
    return TokenizedEpisode(
        tokens=np.zeros(tokens, np.int32), modality=np.zeros(tokens, np.int8),
        local_positions=np.zeros(tokens, np.int32), loss_mask=np.zeros(tokens, bool),
        timestep=np.zeros(tokens, np.int32), timestep_starts=np.zeros(timesteps + 1, np.int64),
        patch_pixels=np.zeros(0, np.uint8), patch_offsets=np.zeros(1, np.int64),
        patch_positions=np.zeros((0, 4), np.int16), patch_starts=np.zeros(timesteps + 1, np.int64),
    )


def test_counts_follow_the_arrays() -> None:
    assert (_empty(0, 0).num_timesteps, _empty(0, 0).num_tokens) == (0, 0)
    assert (_empty(3, 7).num_timesteps, _empty(3, 7).num_tokens) == (3, 7)
    assert isinstance(_empty(3, 7).num_tokens, int)
    built = make_episode([2, 3, 1], actions=2).episode
    assert built.num_timesteps == 3
    # Per timestep: observations, one separator, the actions.
    assert built.num_tokens == (2 + 1 + 2) + (3 + 1 + 2) + (1 + 1 + 2) == int(built.timestep_starts[-1])


def test_defaults_and_frozenness() -> None:
    episode = _empty(1, 1)
    assert episode.field_paths == () and episode.field_shapes == () and episode.field_lengths is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        episode.tokens = np.zeros(2)  # type: ignore[misc]
