"""transforms/expert_filter.py: the expert-return filter (spec section 4) against a brute-force
computation: W, E, the threshold rule, collection order and the keep-or-drop decision."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.output import (
    FILTER_AT_OR_ABOVE_THRESHOLD,
    FILTER_BELOW_THRESHOLD,
    FILTER_NO_FILTER,
)
from tests.episode_fixtures import brute_force
from transforms.episode import EpisodeKey
from transforms.expert_filter import (
    TaskReturns,
    TaskThreshold,
    collection_order,
    decide,
    expert_return,
    threshold_for,
    thresholds_from_pairs,
    window_size,
    window_sums,
)
from transforms.verdict import NON_FINITE_RETURN, NonFiniteReturn


def assert_matches_brute_force(returns: list[float], **kwargs) -> TaskThreshold:
    got = expert_return(returns, **kwargs)
    w, e, threshold, start = brute_force(returns, **kwargs)
    assert (got.n, got.window, got.window_start) == (len(returns), w, start)
    assert got.expert_return == e
    assert got.threshold == threshold
    kept = [r >= threshold for r in returns]
    assert [got.keeps(r) for r in returns] == kept
    return got


# --- W ---


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 1), (9, 1), (10, 1), (11, 1), (19, 1), (20, 2), (29, 2), (10_000, 1000), (10_009, 1000), (20_000, 1000)],
)
def test_window_size_edges(n: int, expected: int) -> None:
    assert window_size(n) == expected


def test_window_size_cap_is_a_flag() -> None:
    assert window_size(20_000, cap=50) == 50
    assert window_size(100, cap=50) == 10
    assert window_size(5, cap=1) == 1


@pytest.mark.parametrize("n", [0, -1, 1.5, True, None])
def test_window_size_rejects_non_counts(n: object) -> None:
    with pytest.raises(ValueError, match="positive episode count"):
        window_size(n)  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [0, -3, 2.5])
def test_window_size_rejects_bad_caps(cap: object) -> None:
    with pytest.raises(ValueError, match="cap"):
        window_size(10, cap=cap)  # type: ignore[arg-type]


# --- threshold rule ---


@pytest.mark.parametrize(
    ("expert", "fraction", "expected"),
    [(10.0, 0.8, 8.0), (-20.0, 0.8, -24.0), (0.0, 0.8, 0.0), (10.0, 1.0, 10.0), (-10.0, 0.5, -15.0), (5.0, 0.0, 0.0)],
)
def test_threshold_is_a_relaxation_for_any_sign(expert: float, fraction: float, expected: float) -> None:
    assert threshold_for(expert, fraction=fraction) == expected
    assert threshold_for(expert, fraction=fraction) <= expert


def test_threshold_uses_the_spec_constant_exactly() -> None:
    # 1 - 0.8 in binary is 0.19999999999999996; the spec says 0.2.
    assert threshold_for(3.0) == 3.0 - 0.2 * 3.0
    assert threshold_for(-7.3) == -7.3 - 0.2 * 7.3


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), float("inf")])
def test_fraction_outside_unit_interval_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        expert_return([1.0, 2.0], fraction=fraction)


def test_a_return_equal_to_the_threshold_is_kept() -> None:
    result = expert_return([10.0] * 5 + [8.0])
    assert result.threshold == 8.0
    assert result.keeps(8.0) and not result.keeps(np.nextafter(8.0, 0.0))


# --- E against brute force ---


@pytest.mark.parametrize("n", [1, 9, 10, 11, 10_000, 20_000])
def test_random_returns_match_brute_force(n: int) -> None:
    rng = np.random.default_rng(n)
    assert_matches_brute_force(rng.normal(50.0, 30.0, size=n).tolist())


@pytest.mark.parametrize("n", [1, 9, 10, 11, 10_000, 20_000])
def test_all_equal_returns(n: int) -> None:
    got = assert_matches_brute_force([3.25] * n)
    assert (got.expert_return, got.window_start, got.threshold) == (3.25, 0, 2.6)


@pytest.mark.parametrize("n", [1, 9, 10, 11, 10_000, 20_000])
def test_negative_pong_like_returns(n: int) -> None:
    rng = np.random.default_rng(1000 + n)
    # Pong scores in [-21, 21], mostly losing, improving slowly over collection.
    drift = np.linspace(-21, -5, n)
    returns = np.clip(np.round(drift + rng.normal(0, 3, size=n)), -21, 21).tolist()
    got = assert_matches_brute_force(returns)
    assert got.threshold == got.expert_return - 0.2 * abs(got.expert_return)


@pytest.mark.parametrize("n", [9, 10, 11, 10_000, 20_000])
def test_a_single_outlier(n: int) -> None:
    returns = [0.0] * n
    position = (7 * n) // 9
    returns[position] = 1e6
    got = assert_matches_brute_force(returns)
    w = window_size(n)
    assert got.expert_return == 1e6 / w
    assert got.window_start == max(0, position - w + 1)  # the first window containing it
    assert [i for i, r in enumerate(returns) if got.keeps(r)] == [position]


def test_large_offsets_keep_full_precision() -> None:
    # Prefix sums over 20,000 returns near 1e9 would cancel most digits of a window sum.
    rng = np.random.default_rng(7)
    returns = (1e9 + rng.integers(-1000, 1000, size=20_000) * 0.25).tolist()
    assert_matches_brute_force(returns)


def test_window_sums_match_direct_sums() -> None:
    values = np.random.default_rng(3).normal(size=1003)
    for window in (1, 2, 7, 100, 1003):
        direct = [math.fsum(values[j : j + window]) for j in range(1003 - window + 1)]
        np.testing.assert_allclose(window_sums(values, window), direct, rtol=0, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=300),
    st.integers(1, 40),
    st.sampled_from([0.8, 0.5, 0.95, 1.0]),
)
def test_property_matches_brute_force(returns: list[float], cap: int, fraction: float) -> None:
    assert_matches_brute_force(returns, cap=cap, fraction=fraction)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")], [[1.0, 2.0]], [1e308] * 20])
def test_empty_or_non_finite_returns_are_refused(bad: list) -> None:
    with pytest.raises(ValueError):
        expert_return(bad)


# --- collection order ---


def _key(task: str, episode: str, order: tuple, source: str = "f0", index: int = 0) -> EpisodeKey:
    return EpisodeKey("atari", task, episode, order, source, index)


def test_ties_in_order_keys_break_by_file_and_record() -> None:
    keys = [
        _key("t", "a", (1,), "f1", 0).sort_key(),
        _key("t", "b", (0,), "f9", 3).sort_key(),
        _key("t", "c", (1,), "f0", 5).sort_key(),
        _key("t", "d", (1,), "f0", 2).sort_key(),
    ]
    assert collection_order(("atari", "t"), keys).tolist() == [1, 3, 2, 0]


def test_threshold_does_not_depend_on_arrival_order() -> None:
    rng = random.Random(5)
    pairs = [(_key("t", str(i), (i // 3,), f"f{i % 2}", i).sort_key(), float(rng.randint(-21, 21))) for i in range(200)]
    expected = thresholds_from_pairs(("atari", "t"), pairs)
    in_order = [value for _, value in sorted(pairs)]
    assert expected == expert_return(in_order)
    for _ in range(5):
        rng.shuffle(pairs)
        assert thresholds_from_pairs(("atari", "t"), pairs) == expected


def test_the_same_episode_twice_is_an_error() -> None:
    key = _key("t", "a", (1,), "f1", 4).sort_key()
    with pytest.raises(ValueError, match="read twice"):
        collection_order(("atari", "t"), [key, key])


def test_incomparable_order_keys_are_an_error() -> None:
    with pytest.raises(ValueError, match="not comparable"):
        collection_order(("atari", "t"), [((1,), "f", 0), (("x",), "f", 1)])
    with pytest.raises(ValueError, match="not comparable"):
        thresholds_from_pairs(("atari", "t"), [(((1,), "f", 0), 1.0), ((("x",), "f", 1), 2.0)])


def test_the_same_episode_twice_is_an_error_in_the_stage_state() -> None:
    key = _key("t", "a", (1,), "f1", 4).sort_key()
    other = _key("t", "b", (2,), "f1", 4).sort_key()  # same file and record, other order key: fine
    assert thresholds_from_pairs(("atari", "t"), [(key, 1.0), (other, 2.0)]).n == 2
    with pytest.raises(ValueError, match="read twice"):
        thresholds_from_pairs(("atari", "t"), [(key, 1.0), (other, 2.0), (key, 1.0)])


# --- decide ---


def test_decide_codes() -> None:
    threshold = expert_return([10.0] * 10)
    key = _key("t", "a", (0,))
    assert decide(key, 8.0, threshold, no_filter=False).reason == FILTER_AT_OR_ABOVE_THRESHOLD
    dropped = decide(key, 7.9, threshold, no_filter=False)
    assert (dropped.kept, dropped.reason) == (False, FILTER_BELOW_THRESHOLD)
    passed = decide(key, -1e9, None, no_filter=True)
    assert (passed.kept, passed.reason) == (True, FILTER_NO_FILTER)
    with pytest.raises(ValueError, match="no expert-return threshold"):
        decide(key, 1.0, None, no_filter=False)
    with pytest.raises(NonFiniteReturn, match=r"file 'f0' \(record 0\), task 't', episode 'a': the return .* is nan") as error:
        decide(key, float("nan"), threshold, no_filter=False)
    assert error.value.reason == NON_FINITE_RETURN


# --- OrderKeys: integer order keys as columns (issue 14) ---


def _state(sort_keys: list, *, parts: int = 1) -> TaskReturns:
    """TaskReturns of `sort_keys`, built in `parts` accumulators merged as a combiner does."""
    chunks = [TaskReturns() for _ in range(parts)]
    for i, key in enumerate(sort_keys):
        chunks[i % parts].add(key, float(i))
    merged = TaskReturns()
    for chunk in chunks:
        merged.merge(pickle.loads(pickle.dumps(chunk)))
    return merged


def test_integer_order_keys_sort_exactly_like_the_tuples() -> None:
    rng = random.Random(11)
    for width, parts in ((2, 1), (2, 4), (1, 3), (0, 2), (3, 5)):
        keys = [(tuple(rng.randint(-3, 3) for _ in range(width)), f"f{rng.randint(0, 2)}", i) for i in range(300)]
        rng.shuffle(keys)
        state = _state(keys, parts=parts)
        assert state.order_keys.int_columns() is not None  # held as columns
        # Merged in chunk order: chunk p holds keys[p::parts].
        expected = collection_order(("a", "t"), [k for p in range(parts) for k in keys[p::parts]])
        assert state.collection_order(("a", "t")).tolist() == expected.tolist()


def test_other_order_keys_fall_back_to_tuples_and_still_compare_like_python() -> None:
    ints = [((i % 5, i), "f", i) for i in range(40)]
    for odd in (((2.5, 0), "f", 99), ((True, 1), "f", 98), ((2**70, 0), "f", 97), ((1,), "f", 96)):
        keys = ints[:20] + [odd] + ints[20:]
        state = _state(keys, parts=3)
        assert state.order_keys.int_columns() is None
        flat = [k for p in range(3) for k in keys[p::3]]
        assert state.collection_order(("a", "t")).tolist() == collection_order(("a", "t"), flat).tolist()
    with pytest.raises(ValueError, match="not comparable"):
        _state(ints + [(("x", 1), "f", 95)], parts=2).collection_order(("a", "t"))
    with pytest.raises(ValueError, match="read twice"):
        _state(ints + [ints[7]], parts=2).collection_order(("a", "t"))


def test_a_million_integer_order_keys_take_8_bytes_a_position() -> None:
    state = TaskReturns()
    for i in range(1_000_000):
        state.add(((i // 50, i), "gs://bucket/f", i), 1.0)
    assert len(pickle.dumps(state.order_keys)) < 17 * 1_000_000
