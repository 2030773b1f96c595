"""transforms/prompt_choice.py: an episode's prompt windows within the budget keyed by its task,
the chosen records per work item, and the tasks whose choice fell short."""

from __future__ import annotations

import pytest

from tests.sequence_fixtures import make_episode
from transforms.episode import EpisodeKey
from transforms.prompt_choice import CandidateSelection, prompt_candidate_for, short_selections
from transforms.prompts import END_WINDOW, prompt_candidate, prompt_windows, slice_timesteps
from transforms.sequence import SequenceConfig


def _key(episode_id: str, work_item: int = 0, index: int = 0, task: str = "t") -> EpisodeKey:
    return EpisodeKey("d", task, episode_id, (index,), f"file-{work_item}", index, work_item)


def test_candidate_windows_fit_the_budget_and_equal_the_prompts_module() -> None:
    episode = make_episode([3] * 10, seed=1).episode  # 3 obs + separator + 1 action: 5 tokens a timestep
    tokenized: list[tuple[int, int]] = []

    def tokenize_slice(a: int, b: int):
        tokenized.append((a, b))
        return slice_timesteps(episode, a, b)

    config = SequenceConfig(sequence_length=48, seed=7)  # budget 12: two timesteps a window
    task, candidate = prompt_candidate_for(_key("e"), 2.5, 10, tokenize_slice, config=config, num_uniform=2)
    assert task == ("d", "t")
    assert candidate.episode_id == "e" and candidate.episode_return == 2.5
    assert all(w.num_tokens <= config.budget for w in candidate.windows)
    assert candidate.windows[0].kind == END_WINDOW and candidate.windows[0].start == 8
    assert all(b - a <= 2 for a, b in tokenized)  # only the windows' timesteps were tokenized
    windows = prompt_windows(10, lambda a, b: slice_timesteps(episode, a, b), budget=12, seed=7, task="t",
                             episode_id="e", num_uniform=2)
    expected = prompt_candidate("e", 2.5, windows, seed=7, task="t")
    assert candidate.rank == expected.rank
    assert [(w.kind, w.start, w.tokens.tokens.tolist()) for w in candidate.windows] == [
        (w.kind, w.start, w.tokens.tokens.tolist()) for w in expected.windows]


def test_indices_in_a_work_item_are_the_chosen_records_of_that_shard() -> None:
    selection = CandidateSelection(keys=(_key("a", 0, 4), _key("b", 1, 2), _key("c", 0, 9)), episodes=10)
    assert selection.indices_in(0) == frozenset({4, 9})
    assert selection.indices_in(1) == frozenset({2})
    assert selection.indices_in(5) == frozenset()


@pytest.mark.parametrize(
    ("chosen", "episodes", "found", "short"),
    [
        (2, 5, 2, False),  # every chosen episode gave a candidate
        (2, 5, 1, True),   # one gave none and three others remain
        (2, 2, 1, False),  # one gave none but there is no other episode
        (2, 5, None, True),  # none of them gave a candidate
        (0, 0, None, False),
    ],
)
def test_short_selections(chosen: int, episodes: int, found: int | None, short: bool) -> None:
    selection = CandidateSelection(keys=tuple(_key(str(i)) for i in range(chosen)), episodes=episodes)
    counts = {} if found is None else {("d", "t"): found}
    assert short_selections({("d", "t"): selection}, counts) == ({("d", "t"): selection} if short else {})


def test_candidates_only_tokenize_windows_within_the_budget() -> None:
    config = SequenceConfig(sequence_length=24, prompt_fraction=0.5, seed=11)
    episode = make_episode([1 + t % 3 for t in range(12)], seed=0).episode
    task, candidate = prompt_candidate_for(
        _key("e1", task="t/a"), 3.0, episode.num_timesteps, lambda a, b: slice_timesteps(episode, a, b), config=config
    )
    assert task == ("d", "t/a") and candidate.episode_return == 3.0
    assert candidate.windows and all(w.num_tokens <= config.budget for w in candidate.windows)


def test_short_selections_only_when_a_chosen_one_gave_nothing_and_more_exist() -> None:
    task = ("d", "t")
    key = object()
    chosen = CandidateSelection(keys=(key, key), episodes=5)  # type: ignore[arg-type]
    assert short_selections({task: chosen}, {task: 2}) == {}
    assert short_selections({task: chosen}, {task: 1}) == {task: chosen}
    assert short_selections({task: chosen}, {}) == {task: chosen}
    everyone = CandidateSelection(keys=(key, key), episodes=2)  # type: ignore[arg-type]
    assert short_selections({task: everyone}, {task: 1}) == {}
