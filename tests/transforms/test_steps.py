"""transforms/steps.py: the final is_last step is never emitted (T = steps - 1), step dicts
flatten to `/` paths, and slices are views of whole timesteps."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from transforms.episode import EpisodeKey, RawEpisode
from transforms.steps import count_steps, emitted_steps, num_emitted_steps, slice_steps, step_leaves


def _raw(steps: dict) -> RawEpisode:
    return RawEpisode(EpisodeKey("d", "t", "e", (), "f", 0), steps, {})


def _steps(n: int) -> dict:
    return {
        "observation": {"image": np.arange(n * 4).reshape(n, 2, 2), "state": {"x": np.arange(n, dtype=np.float32)}},
        "action": np.arange(10, 10 + n),
        "is_first": np.arange(n) == 0,
        "is_last": np.arange(n) == n - 1,
    }


def test_step_leaves_flattens_nested_dicts_to_slash_paths() -> None:
    steps = _steps(3)
    leaves = step_leaves(steps)
    assert list(leaves) == ["observation/image", "observation/state/x", "action", "is_first", "is_last"]
    assert leaves["observation/state/x"] is steps["observation"]["state"]["x"]
    assert step_leaves({}) == {}
    assert list(step_leaves({"a": {"b": 1}}, prefix="steps")) == ["steps/a/b"]


def test_emitted_steps_drop_exactly_the_final_step_as_views() -> None:
    steps = _steps(4)
    raw = _raw(steps)
    emitted = emitted_steps(raw)
    assert num_emitted_steps(raw) == 3
    assert emitted["action"].tolist() == [10, 11, 12]
    assert emitted["observation"]["state"]["x"].tolist() == [0.0, 1.0, 2.0]
    assert emitted["observation"]["image"].shape == (3, 2, 2)
    assert np.shares_memory(emitted["action"], steps["action"])  # views, not copies
    assert not emitted["is_last"].any()  # the is_last step is gone


def test_a_one_step_episode_emits_nothing() -> None:
    raw = _raw(_steps(1))
    assert num_emitted_steps(raw) == 0
    assert count_steps(emitted_steps(raw)) == 0


@given(st.integers(1, 30), st.data())
def test_slices_partition_the_timesteps(n: int, data: st.DataObject) -> None:
    steps = _steps(n)
    cut = data.draw(st.integers(0, n))
    head, tail = slice_steps(steps, 0, cut), slice_steps(steps, cut, n)
    assert count_steps(head) == cut and count_steps(tail) == n - cut
    for path, leaf in step_leaves(steps).items():
        np.testing.assert_array_equal(np.concatenate([step_leaves(head)[path], step_leaves(tail)[path]]), leaf)
    assert np.shares_memory(step_leaves(tail)["action"], steps["action"]) or n == cut


def test_count_steps_is_the_length_of_the_first_leaf() -> None:
    assert count_steps({}) == 0
    assert count_steps({"observation": {"a": np.zeros(5)}, "action": np.zeros(2)}) == 5
