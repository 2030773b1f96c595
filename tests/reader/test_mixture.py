"""Mixture weights and draws: exact weights, empirical proportions, exhaustion policies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reader.mixture import Exhausted, Mixture, _cumcount, resolve_weights

SOURCES = {("atari", "pong"): 100, ("atari", "breakout"): 300, ("dmlab", "a"): 50}
MANIFEST = {"atari": {"weight": 9.5, "tasks": {}}, "dmlab": {"weight": 9.35, "tasks": {}}}


def test_weights_from_manifest_tasks_by_rows() -> None:
    w = resolve_weights(SOURCES, [MANIFEST])
    atari = 9.5 / 18.85
    assert w[("atari", "pong")] == pytest.approx(atari * 100 / 400)
    assert w[("atari", "breakout")] == pytest.approx(atari * 300 / 400)
    assert w[("dmlab", "a")] == pytest.approx(9.35 / 18.85)
    assert sum(w.values()) == pytest.approx(1.0)


def test_weights_manifest_task_weights_and_overrides() -> None:
    manifest = {"atari": {"weight": 1.0, "tasks": {"pong": 3.0, "breakout": 1.0}}, "dmlab": {"weight": 1.0}}
    w = resolve_weights(SOURCES, [manifest])
    assert w[("atari", "pong")] == pytest.approx(0.375)
    assert w[("atari", "breakout")] == pytest.approx(0.125)
    w = resolve_weights(SOURCES, [manifest], dataset_weights={"dmlab": 3.0}, task_weights={("atari", "pong"): 0.0})
    assert w == {
        ("atari", "pong"): 0.0,
        ("atari", "breakout"): pytest.approx(0.25),
        ("dmlab", "a"): pytest.approx(0.75),
    }


@pytest.mark.parametrize(
    ("kwargs", "manifests", "message"),
    [
        ({"dataset_weights": {"atary": 1.0}}, [MANIFEST], r"unknown datasets \['atary'\]"),
        ({"task_weights": {("atari", "pongg"): 1.0}}, [MANIFEST], "unknown .* pairs"),
        ({"dataset_weights": {"atari": -1.0}}, [MANIFEST], "must be finite and >= 0"),
        ({"dataset_weights": {"atari": float("nan")}}, [MANIFEST], "must be finite"),
        ({}, [{"atari": {"weight": 1.0}}], "'dmlab' has no sampling weight"),
        ({}, [MANIFEST, {"atari": {"weight": 2.0}}], "disagree on the sampling weight of 'atari'"),
        (
            {},
            [{"atari": {"weight": 1.0, "tasks": {"pong": 1.0}}, "dmlab": {"weight": 1}}],
            r"\['breakout'\] have no weight",
        ),
        ({"dataset_weights": {"atari": 0, "dmlab": 0}}, [MANIFEST], "every dataset weight is 0"),
    ],
)
def test_bad_weights_are_refused(kwargs: dict, manifests: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_weights(SOURCES, manifests, **kwargs)


def test_cumcount() -> None:
    assert _cumcount(np.array([2, 0, 2, 2, 1, 0])).tolist() == [0, 0, 1, 2, 0, 1]


def test_repeat_mixture_matches_weights_over_a_long_run() -> None:
    weights = np.array([0.0935, 0.095, 0.0896, 0.7219])
    mixture = Mixture(weights, rows=np.array([7, 1000, 50, 3]), seed=5, exhausted=Exhausted.REPEAT, num_epochs=None)
    draws = mixture.take(mixture.initial(), 200_000)
    freq = np.bincount(draws.source, minlength=4) / 200_000
    # Binomial std <= 0.0011 at n = 200000: a tolerance of 0.005 is > 4.5 sigma.
    np.testing.assert_allclose(freq, weights, atol=0.005)
    # Each source cycles through its rows epoch by epoch: draw k of source s is (k // rows, k % rows).
    small = draws.source == 0
    k = np.arange(small.sum())
    assert np.array_equal(draws.epoch[small], k // 7)
    assert np.array_equal(draws.cursor[small], k % 7)


def test_drop_mixture_draws_every_row_once_per_epoch_then_ends() -> None:
    rows = np.array([5, 40, 13])
    mixture = Mixture(np.array([0.6, 0.1, 0.3]), rows=rows, seed=1, exhausted=Exhausted.DROP, num_epochs=2)
    state = mixture.initial()
    draws = mixture.take(state, 10_000)
    assert len(draws) == 2 * rows.sum() and state.finished and state.position == 2 * rows.sum()
    for epoch in (0, 1):
        in_epoch = draws.epoch == epoch
        pairs = sorted(zip(draws.source[in_epoch].tolist(), draws.cursor[in_epoch].tolist()))
        assert pairs == [(s, c) for s in range(3) for c in range(rows[s])]
    assert draws.epoch.tolist() == sorted(draws.epoch.tolist())
    assert len(mixture.take(state, 5)) == 0


def test_drop_mixture_renormalizes_after_a_source_runs_out() -> None:
    # Source 0 (weight 0.9, 10 rows) runs out early; then 1 and 2 share 1:1.
    rows = np.array([10, 100_000, 100_000])
    mixture = Mixture(np.array([0.9, 0.05, 0.05]), rows=rows, seed=2, exhausted="drop", num_epochs=None)
    draws = mixture.take(mixture.initial(), 40_000)
    last_of_0 = int(np.flatnonzero(draws.source == 0)[-1])
    assert (draws.source == 0).sum() == 10 and last_of_0 < 100
    after = draws.source[last_of_0 + 1 :]
    assert abs((after == 1).mean() - 0.5) < 0.01


@given(st.sampled_from(["repeat", "drop"]), st.lists(st.integers(0, 300), min_size=1, max_size=5))
@settings(max_examples=30, deadline=None)
def test_taking_in_pieces_equals_taking_at_once(policy: str, pieces: list[int]) -> None:
    rows = np.array([17, 3, 60])
    mixture = Mixture(np.array([0.2, 0.3, 0.5]), rows=rows, seed=9, exhausted=policy, num_epochs=None)
    whole = mixture.take(mixture.initial(), sum(pieces))
    state = mixture.initial()
    parts = [mixture.take(state, n) for n in pieces]
    for field in ("source", "epoch", "cursor"):
        assert np.array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))
    resumed = mixture.state_at(sum(pieces))
    assert resumed.to_dict() == state.to_dict()


def test_invalid_mixture_settings() -> None:
    with pytest.raises(ValueError, match="num_epochs applies to exhausted='drop'"):
        Mixture(np.array([1.0]), rows=np.array([3]), seed=0, exhausted="repeat", num_epochs=1)
    with pytest.raises(ValueError, match="num_epochs must be >= 1"):
        Mixture(np.array([1.0]), rows=np.array([3]), seed=0, exhausted="drop", num_epochs=0)
    with pytest.raises(ValueError, match="one positive weight and a positive row count"):
        Mixture(np.array([1.0, 0.0]), rows=np.array([3, 3]), seed=0, exhausted="drop", num_epochs=None)
    with pytest.raises(ValueError, match="'sometimes' is not a valid Exhausted"):
        Mixture(np.array([1.0]), rows=np.array([3]), seed=0, exhausted="sometimes", num_epochs=None)


def _drop_mixture(num_epochs: int | None = None) -> Mixture:
    return Mixture(np.array([0.2, 0.3, 0.5]), rows=np.array([17, 3, 60]), seed=9, exhausted="drop", num_epochs=num_epochs)


def _repeat_mixture() -> Mixture:
    return Mixture(np.array([0.2, 0.3, 0.5]), rows=np.array([17, 3, 60]), seed=9, exhausted="repeat", num_epochs=None)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("counts"), r"mixture\.counts is missing"),
        (lambda d: d.update(counts="abc"), r"mixture\.counts 'abc' is not a list of 3 non-negative integers"),
        (lambda d: d.update(counts=[1, 2]), r"mixture\.counts \[1, 2\] is not a list of 3 non-negative integers"),
        (lambda d: d.update(counts=[1.5, 0, 0]), r"mixture\.counts \[1\.5, 0, 0\] is not a list of 3"),
        (lambda d: d.update(counts=[-1, 0, 0]), r"mixture\.counts \[-1, 0, 0\] is not a list of 3"),
        (lambda d: d.update(active=[1, 0, 1]), r"mixture\.active \[1, 0, 1\] is not a list of 3 booleans"),
        (lambda d: d.update(active=None), r"mixture\.active None is not a list of 3 booleans"),
        (lambda d: d.update(epoch="0"), r"mixture\.epoch '0' is not a non-negative integer"),
        (lambda d: d.pop("position"), r"mixture\.position is missing"),
        (lambda d: d.update(finished=0), r"mixture\.finished 0 is not a boolean"),
    ],
)
def test_a_mixture_state_of_the_wrong_shape_is_refused_naming_the_field(edit, message: str) -> None:  # noqa: ANN001
    mixture = _repeat_mixture()
    state = mixture.initial()
    mixture.skip(state, 50)
    data = state.to_dict()
    edit(data)
    with pytest.raises(ValueError, match=message):
        mixture.restore(data)


@pytest.mark.parametrize(
    ("policy", "edit", "message"),
    [
        ("repeat", lambda d: d.update(counts=[0, 0, 0]), r"mixture\.counts sum to 0, but 50 draws were made"),
        ("repeat", lambda d: d.update(epoch=1), r"mixture\.epoch is 1, but under 'repeat' it is always 0"),
        ("repeat", lambda d: d.update(active=[True, False, True]), r"mixture\.active .* under 'repeat'"),
        ("repeat", lambda d: d.update(finished=True), r"mixture\.finished .* under 'repeat'"),
        ("drop", lambda d: d.update(counts=[18, 0, 32]), r"mixture\.counts\[0\] is 18, more than the 17 rows"),
        ("drop", lambda d: d.update(active=[False, True, True]), r"mixture\.active\[0\] is False, but source 0 has"),
        ("drop", lambda d: d.update(finished=True), r"mixture\.finished is True, but epoch 0 of num_epochs 2"),
    ],
)
def test_an_inconsistent_mixture_state_is_refused(policy: str, edit, message: str) -> None:  # noqa: ANN001
    mixture = _repeat_mixture() if policy == "repeat" else _drop_mixture(num_epochs=2)
    state = mixture.initial()
    mixture.skip(state, 50)
    data = state.to_dict()
    edit(data)
    with pytest.raises(ValueError, match=message):
        mixture.restore(data)
    assert mixture.restore(state.to_dict()).to_dict() == state.to_dict()


def test_state_at_under_drop_starts_from_the_last_epoch_boundary() -> None:
    simulated = _drop_mixture().initial()
    mixture = _drop_mixture()
    for position in range(0, 4 * 80 + 1, 7):
        mixture.skip(simulated, position - simulated.position)
        assert mixture.state_at(position).to_dict() == simulated.to_dict()
    far = mixture.state_at(10**15 + 5)  # instant: whole epochs are not replayed
    assert (far.position, far.epoch, int(far.counts.sum())) == (10**15 + 5, 10**15 // 80, 5)


def test_a_position_past_the_end_or_too_far_to_replay_is_refused() -> None:
    ended = _drop_mixture(num_epochs=2)
    assert ended.state_at(160).finished
    with pytest.raises(ValueError, match=r"position 161 is past the end of the stream \(2 epoch\(s\) of 80 rows: 160\)"):
        ended.state_at(161)
    with pytest.raises(ValueError, match=r"position 4611686018427387904 needs 4611686018427387904 draws replayed"):
        _repeat_mixture().state_at(2**62)
