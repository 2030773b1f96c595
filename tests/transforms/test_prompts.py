"""Prompt windows, pools and choices (spec section 5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sequence_fixtures import make_episode
from transforms.prompts import (
    END_WINDOW,
    UNIFORM_WINDOW,
    PromptPool,
    pick_window,
    prompt_candidate,
    prompt_windows,
    slice_timesteps,
    top_candidates,
    wants_prompt,
)
from transforms.types import TokenizedEpisode


def _episode_fields_equal(a: TokenizedEpisode, b: TokenizedEpisode) -> None:
    for name in TokenizedEpisode.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_slice_timesteps_is_the_episode_of_those_timesteps() -> None:
    full = make_episode([2, 3, 1, 4, 2], patches=2, seed=3).episode
    part = slice_timesteps(full, 1, 4)
    alone = make_episode([2, 3, 1, 4, 2], patches=2, seed=3).episode
    assert part.num_timesteps == 3
    assert part.timestep_starts.tolist() == [0, 7, 12, 20]
    assert part.timestep.min() == 0 and part.timestep.max() == 2
    np.testing.assert_array_equal(part.tokens, alone.tokens[6:26])
    assert part.patch_starts.tolist() == [0, 2, 4, 6]
    np.testing.assert_array_equal(part.patch_pixels, alone.patch_pixels[2 * 768 : 8 * 768])
    _episode_fields_equal(slice_timesteps(full, 0, 5), full)
    assert slice_timesteps(full, 2, 2).num_tokens == 0
    with pytest.raises(ValueError, match="outside an episode of 5 timesteps"):
        slice_timesteps(full, 3, 6)


class _Slicer:
    """tokenize_slice over a prebuilt episode, recording what was asked for."""

    def __init__(self, episode: TokenizedEpisode) -> None:
        self.episode = episode
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, stop: int) -> TokenizedEpisode:
        self.calls.append((start, stop))
        return slice_timesteps(self.episode, start, stop)


def test_prompt_windows_exact_for_uniform_timesteps() -> None:
    episode = make_episode([2] * 20).episode  # 4 tokens per timestep
    slicer = _Slicer(episode)
    windows = prompt_windows(20, slicer, budget=10, seed=1, task="t", episode_id="e", num_uniform=4)
    assert [w.kind for w in windows] == [END_WINDOW] + [UNIFORM_WINDOW] * 4
    end = windows[0]
    assert (end.start, end.num_timesteps, end.num_tokens, end.episode_id) == (18, 2, 8, "e")
    np.testing.assert_array_equal(end.tokens.tokens, episode.tokens[72:80])
    for w in windows[1:]:
        assert 0 <= w.start <= 18 and w.num_timesteps == 2
        np.testing.assert_array_equal(
            w.tokens.tokens, episode.tokens[4 * w.start : 4 * w.start + 8]
        )
    # Only the first timestep and the windows themselves were tokenized.
    assert slicer.calls[0] == (0, 1)
    assert sum(b - a for a, b in slicer.calls) == 1 + 5 * 2
    again = prompt_windows(20, _Slicer(episode), budget=10, seed=1, task="t", episode_id="e", num_uniform=4)
    assert [w.start for w in again] == [w.start for w in windows]
    other = prompt_windows(20, _Slicer(episode), budget=10, seed=2, task="t", episode_id="e", num_uniform=4)
    assert [w.start for w in other] != [w.start for w in windows]


def test_prompt_windows_trim_whole_timesteps_when_later_ones_are_longer() -> None:
    # First timestep 3 tokens -> 4 timesteps planned; later ones have 12 tokens.
    episode = make_episode([1] + [10] * 9).episode
    windows = prompt_windows(10, _Slicer(episode), budget=12, seed=0, task="t", episode_id="e", num_uniform=3)
    end = windows[0]
    assert (end.kind, end.start, end.num_timesteps, end.num_tokens) == (END_WINDOW, 9, 1, 12)
    for w in windows:
        assert w.num_tokens <= 12 and w.num_timesteps >= 1
        # Uniform windows keep their start and lose timesteps at the back.
        if w.kind == UNIFORM_WINDOW:
            np.testing.assert_array_equal(
                w.tokens.tokens,
                slice_timesteps(episode, w.start, w.start + w.num_timesteps).tokens,
            )


def test_prompt_windows_leave_out_what_cannot_fit() -> None:
    episode = make_episode([20, 20, 20]).episode
    assert prompt_windows(3, _Slicer(episode), budget=10, seed=0, task="t", episode_id="e") == []
    assert prompt_windows(0, _Slicer(episode), budget=10, seed=0, task="t", episode_id="e") == []
    short = make_episode([2]).episode
    windows = prompt_windows(1, _Slicer(short), budget=100, seed=0, task="t", episode_id="e", num_uniform=2)
    assert [(w.kind, w.start, w.num_timesteps) for w in windows] == [
        (END_WINDOW, 0, 1), (UNIFORM_WINDOW, 0, 1), (UNIFORM_WINDOW, 0, 1)
    ]


def test_prompt_windows_refuse_a_wrong_slice() -> None:
    episode = make_episode([2] * 5).episode
    with pytest.raises(ValueError, match="returned 5 timesteps, expected 1"):
        prompt_windows(5, lambda a, b: episode, budget=10, seed=0, task="t", episode_id="e")


def _candidate(episode_id: str, value: float, task: str = "t"):
    episode = make_episode([1, 1]).episode
    windows = prompt_windows(2, _Slicer(episode), budget=6, seed=0, task=task, episode_id=episode_id)
    return prompt_candidate(episode_id, value, windows, seed=0, task=task)


def test_pool_keeps_the_best_returns_bounded() -> None:
    candidates = [_candidate(f"e{i}", float(i % 7)) for i in range(40)]
    pool = PromptPool(capacity=5).merged(candidates)
    assert len(pool.candidates) == 5
    assert [c.episode_return for c in pool.candidates] == [6.0] * 5
    assert [c.sort_key() for c in pool.candidates] == sorted(c.sort_key() for c in pool.candidates)
    assert PromptPool(capacity=0).merged(candidates).candidates == ()
    no_windows = prompt_candidate("x", 100.0, [], seed=0, task="t")
    assert "x" not in [c.episode_id for c in PromptPool(capacity=5).merged([no_windows]).candidates]
    with pytest.raises(ValueError):
        PromptPool(capacity=-1)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=25), st.integers(0, 25), st.integers(1, 6))
def test_pool_merge_is_order_independent(values: list[int], cut: int, capacity: int) -> None:
    candidates = [_candidate(f"e{i}", float(v)) for i, v in enumerate(values)]
    whole = PromptPool(capacity=capacity).merged(candidates)
    left = PromptPool(capacity=capacity).merged(candidates[:cut])
    right = PromptPool(capacity=capacity).merged(candidates[cut:])
    assert left.merged(right.candidates) == whole
    assert right.merged(left.candidates) == whole
    assert top_candidates(reversed(candidates), capacity) == whole.candidates


def test_eligible_needs_the_threshold_and_another_episode() -> None:
    pool = PromptPool(capacity=4).merged([_candidate("a", 10.0), _candidate("b", 5.0), _candidate("c", 1.0)])
    assert [c.episode_id for c in pool.eligible(threshold=5.0, exclude="z")] == ["a", "b"]
    assert [c.episode_id for c in pool.eligible(threshold=5.0, exclude="a")] == ["b"]
    assert pool.eligible(threshold=11.0, exclude="z") == ()


def test_choices_follow_the_configured_fraction_and_split_half_half() -> None:
    n = 4000
    wants = sum(
        wants_prompt(seed=0, task="t", episode_id=f"e{i // 10}", sequence_index=i % 10, fraction=0.25)
        for i in range(n)
    )
    assert abs(wants / n - 0.25) < 0.03
    assert not any(wants_prompt(seed=0, task="t", episode_id="e", sequence_index=i, fraction=0.0) for i in range(100))
    eligible = (_candidate("a", 1.0), _candidate("b", 1.0))
    picks = [pick_window(eligible, seed=0, task="t", episode_id="x", sequence_index=i) for i in range(n)]
    ends = sum(p.kind == END_WINDOW for p in picks)
    assert abs(ends / n - 0.5) < 0.03
    assert abs(sum(p.episode_id == "a" for p in picks) / n - 0.5) < 0.03
    assert pick_window((), seed=0, task="t", episode_id="x", sequence_index=0) is None
