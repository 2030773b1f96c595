"""Cutting tokenized episodes into sequences, with prompts (spec section 5)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.output import NO_TIMESTEP
from schemas.vocab import DISJOINT, GATO, Encoding, Modality
from tests.sequence_fixtures import (
    ACTION_POSITION,
    check_sequences,
    make_episode,
    patch_value,
)
from transforms.continuous import tokens_to_values
from transforms.prompts import (
    END_WINDOW,
    PromptPool,
    prompt_candidate,
    prompt_windows,
    slice_timesteps,
)
from transforms.sequence import (
    TIMESTEP_TOO_LONG,
    SequenceConfig,
    SequencingError,
    sequence_episode,
)

NO_PROMPTS = SequenceConfig(sequence_length=16, prompt_fraction=0.0)


def test_exact_cut_of_a_small_episode() -> None:
    # Timesteps of 7, 9, 6, 8, 5 tokens (obs + separator + 1 action), L = 16.
    built = make_episode([5, 7, 4, 6, 3])
    batch = sequence_episode(built.episode, episode_id="e", task="t", config=NO_PROMPTS)
    assert batch.num_tokens.tolist() == [16, 14, 5]
    tok = built.episode.tokens
    assert batch.tokens[0].tolist() == tok[0:16].tolist()
    assert batch.tokens[1].tolist() == tok[16:30].tolist() + [GATO.pad] * 2
    assert batch.tokens[2].tolist() == tok[30:35].tolist() + [GATO.pad] * 11
    assert batch.timestep[1].tolist() == [2] * 6 + [3] * 8 + [NO_TIMESTEP] * 2
    assert batch.local_positions[2].tolist() == [0, 1, 2, ACTION_POSITION, ACTION_POSITION] + [0] * 11
    assert batch.loss_mask[2].tolist() == [False] * 4 + [True] + [False] * 11
    assert batch.modality[2].tolist() == [Modality.CONTINUOUS] * 3 + [
        Modality.SEPARATOR, Modality.DISCRETE] + [Modality.PAD] * 11
    assert not batch.is_prompt.any()
    assert batch.prompt_episode_id == (None, None, None)
    assert (batch.num_prompted, batch.num_unprompted, batch.total_tokens) == (0, 3, 35)
    check_sequences(batch, built.episode, length=16)


def test_a_timestep_of_exactly_l_tokens_fills_a_row() -> None:
    built = make_episode([14, 1, 14])
    batch = sequence_episode(built.episode, episode_id="e", task="t", config=NO_PROMPTS)
    assert batch.num_tokens.tolist() == [16, 3, 16]


def test_a_timestep_longer_than_l_is_an_error_naming_it() -> None:
    built = make_episode([3, 3, 15, 3])
    with pytest.raises(SequencingError, match=r"episode 'ep7', timestep 2: .*value 17") as info:
        sequence_episode(built.episode, episode_id="ep7", task="t", config=NO_PROMPTS)
    assert info.value.reason == TIMESTEP_TOO_LONG and isinstance(info.value, ValueError)
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.episode, again.timestep, again.value) == ("ep7", 2, 17)


def test_empty_episode_has_no_sequences() -> None:
    batch = sequence_episode(make_episode([]).episode, episode_id="e", task="t", config=NO_PROMPTS)
    assert batch.num_sequences == 0 and batch.tokens.shape == (0, 16)
    assert batch.row_patch_starts.tolist() == [0]


def test_padding_uses_the_layout_pad_id() -> None:
    built = make_episode([2], layout=DISJOINT)
    config = SequenceConfig(sequence_length=8, prompt_fraction=0.0, layout=DISJOINT)
    batch = sequence_episode(built.episode, episode_id="e", task="t", config=config)
    assert batch.tokens[0, 4:].tolist() == [DISJOINT.pad] * 4
    check_sequences(batch, built.episode, length=8, layout=DISJOINT)


def test_decoding_rows_gives_back_the_episode_values() -> None:
    built = make_episode([3, 4, 5, 2, 6, 1] * 4, actions=2, patches=3, seed=9)
    batch = sequence_episode(built.episode, episode_id="e", task="t", config=SequenceConfig(sequence_length=40, prompt_fraction=0))
    check_sequences(batch, built.episode, length=40)
    for t, (obs, act) in enumerate(zip(built.observations, built.actions)):
        s, cols = np.nonzero(batch.timestep == t)
        assert np.unique(s).size == 1  # never split
        row_mod = batch.modality[s, cols]
        row_tok = batch.tokens[s, cols]
        values = tokens_to_values(row_tok[row_mod == Modality.CONTINUOUS], Encoding.LINEAR)
        assert np.abs(values - obs).max() <= 1 / 1024 + 1e-12  # half a bin of width 2/1024
        assert (row_tok[row_mod == Modality.DISCRETE] - GATO.discrete_offset).tolist() == act.tolist()
        # This timestep's patches, in token order, carry their own pixels.
        row = int(s[0])
        image_cols = np.flatnonzero(batch.modality[row] == Modality.IMAGE)
        first = int(np.searchsorted(image_cols, cols[0]))
        for p in range(3):
            i = int(batch.row_patch_starts[row]) + first + p
            pixels = batch.patch_pixels[batch.patch_offsets[i] : batch.patch_offsets[i + 1]]
            assert (pixels == patch_value(9, t, p)).all() and pixels.size == 768


def _pool(task: str, episodes: dict[str, float], *, budget: int, capacity: int = 16) -> PromptPool:
    candidates = []
    for i, (episode_id, value) in enumerate(episodes.items()):
        ep = make_episode([2, 3, 1] * 6, patches=1, seed=100 + i).episode
        windows = prompt_windows(
            ep.num_timesteps, lambda a, b, ep=ep: slice_timesteps(ep, a, b),
            budget=budget, seed=0, task=task, episode_id=episode_id,
        )
        candidates.append(prompt_candidate(episode_id, value, windows, seed=0, task=task))
    return PromptPool(capacity=capacity).merged(candidates)


def test_prompts_come_from_other_episodes_at_the_configured_fraction() -> None:
    config = SequenceConfig(sequence_length=48, prompt_fraction=0.25, seed=3)
    pool = _pool("t", {"a": 5.0, "b": 4.0, "c": 0.5}, budget=config.budget)
    eligible = pool.eligible(threshold=1.0, exclude="a")
    assert [c.episode_id for c in eligible] == ["b"]
    windows = {(w.episode_id, w.kind, w.start): w for c in pool.candidates for w in c.windows}
    rows = prompted = ends = 0
    for e in range(100):
        episode_id = f"x{e}" if e else "a"
        built = make_episode([4, 6, 2, 9, 3] * 12, patches=1, seed=e)
        batch = sequence_episode(
            built.episode, episode_id=episode_id, task="t", config=config,
            prompts=pool.eligible(threshold=1.0, exclude=episode_id),
        )
        check_sequences(batch, built.episode, length=48)
        rows += batch.num_sequences
        prompted += batch.num_prompted
        for s in range(batch.num_sequences):
            if batch.prompt_episode_id[s] is None:
                continue
            assert batch.prompt_episode_id[s] in {"a", "b"} - {episode_id}
            ends += batch.prompt_kind[s] == END_WINDOW
            n_prompt = int(batch.is_prompt[s].sum())
            assert 0 < n_prompt <= config.budget
            match = [
                w for (pid, kind, _), w in windows.items()
                if pid == batch.prompt_episode_id[s] and kind == batch.prompt_kind[s]
                and w.tokens.tokens.tolist() == batch.tokens[s, :n_prompt].tolist()
            ]
            assert match, "prompt tokens are not a window of the prompt episode"
            np.testing.assert_array_equal(batch.local_positions[s, :n_prompt], match[0].tokens.local_positions)
            p0 = int(batch.row_patch_starts[s])
            k = match[0].tokens.patch_positions.shape[0]
            np.testing.assert_array_equal(
                batch.patch_pixels[batch.patch_offsets[p0] : batch.patch_offsets[p0 + k]],
                match[0].tokens.patch_pixels,
            )
        assert batch.prompts_unavailable == 0
    assert rows > 1000
    assert abs(prompted / rows - 0.25) < 0.04
    assert abs(ends / prompted - 0.5) < 0.08


def test_prompted_rows_hold_fewer_episode_timesteps() -> None:
    built = make_episode([2] * 40)  # 4 tokens per timestep
    config = SequenceConfig(sequence_length=16, prompt_fraction=1.0, prompt_budget=8)
    pool = _pool("t", {"other": 1.0}, budget=8)
    batch = sequence_episode(built.episode, episode_id="e", task="t", config=config, prompts=pool.candidates)
    check_sequences(batch, built.episode, length=16)
    assert batch.num_prompted == batch.num_sequences
    episode_tokens = batch.num_tokens - batch.is_prompt.sum(axis=1)
    prompt_tokens = batch.is_prompt.sum(axis=1)
    assert len(set(prompt_tokens.tolist())) > 1  # windows of different sizes were used
    # Greedy: as many whole 4-token timesteps as the room left by the prompt allows.
    assert episode_tokens[:-1].tolist() == (4 * ((16 - prompt_tokens[:-1]) // 4)).tolist()


def test_a_prompt_that_leaves_no_room_is_dropped() -> None:
    built = make_episode([13] * 5)  # 15 tokens per timestep, L = 16, windows of 2-4 tokens
    config = SequenceConfig(sequence_length=16, prompt_fraction=1.0, prompt_budget=4)
    pool = _pool("t", {"other": 1.0}, budget=4)
    batch = sequence_episode(built.episode, episode_id="e", task="t", config=config, prompts=pool.candidates)
    assert batch.num_sequences == 5 and batch.num_prompted == 0
    check_sequences(batch, built.episode, length=16)


def test_a_task_with_one_episode_gets_no_prompts_and_says_so() -> None:
    config = SequenceConfig(sequence_length=16, prompt_fraction=0.5)
    pool = _pool("t", {"only": 1.0}, budget=config.budget)
    built = make_episode([2] * 100)
    batch = sequence_episode(
        built.episode, episode_id="only", task="t", config=config,
        prompts=pool.eligible(threshold=0.0, exclude="only"),
    )
    assert batch.num_prompted == 0
    assert 0.3 * batch.num_sequences < batch.prompts_unavailable < 0.7 * batch.num_sequences
    # Even if handed its own candidate, an episode never prompts itself.
    same = sequence_episode(built.episode, episode_id="only", task="t", config=config, prompts=pool.candidates)
    assert same.num_prompted == 0 and same.prompts_unavailable == batch.prompts_unavailable


def test_same_seed_same_rows_other_seed_other_prompts() -> None:
    built = make_episode([3, 1, 2] * 30, patches=1)
    pool = _pool("t", {"a": 1.0, "b": 1.0}, budget=8)

    def run(seed: int):
        config = SequenceConfig(sequence_length=32, prompt_fraction=0.5, seed=seed)
        return sequence_episode(built.episode, episode_id="e", task="t", config=config, prompts=pool.candidates)

    one, two, other = run(1), run(1), run(2)
    for name in ("tokens", "is_prompt", "patch_pixels", "patch_positions", "num_tokens"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert one.prompt_episode_id == two.prompt_episode_id
    assert (one.prompt_episode_id, one.prompt_kind) != (other.prompt_episode_id, other.prompt_kind)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 12), min_size=0, max_size=40),
    st.integers(15, 40),
    st.integers(0, 3),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32),
)
def test_rows_keep_every_invariant(obs: list[int], length: int, patches: int, fraction: float, seed: int) -> None:
    built = make_episode(obs, patches=patches, seed=seed % 1000)
    if built.episode.num_timesteps and np.diff(built.episode.timestep_starts).max() > length:
        with pytest.raises(SequencingError):
            sequence_episode(built.episode, episode_id="e", task="t", config=SequenceConfig(sequence_length=length))
        return
    config = SequenceConfig(sequence_length=length, prompt_fraction=fraction, seed=seed)
    pool = _pool("t", {"a": 1.0, "e": 2.0}, budget=config.budget)
    batch = sequence_episode(built.episode, episode_id="e", task="t", config=config, prompts=pool.candidates)
    check_sequences(batch, built.episode, length=length)


def test_config_validation() -> None:
    assert SequenceConfig().budget == 256
    assert SequenceConfig(sequence_length=100, prompt_budget=10).budget == 10
    for bad in (dict(sequence_length=0), dict(prompt_fraction=1.5), dict(prompt_budget=1024)):
        with pytest.raises(ValueError):
            SequenceConfig(**bad)
