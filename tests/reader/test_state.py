"""reader/state.py: the saved state round-trips through JSON, and restoring another version,
another stream's state or a bad position is refused."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reader.state import MAX_TAIL_LAYERS, STATE_VERSION, ReaderState, Tail, fingerprint


def test_fingerprint_is_sha256_of_canonical_json_whatever_the_key_order() -> None:
    assert fingerprint({"seed": 1, "a": [1, 2]}) == hashlib.sha256(b'{"a":[1,2],"seed":1}').hexdigest()
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
    assert fingerprint({"seed": 1}) != fingerprint({"seed": 2})
    assert fingerprint({"x": (1, 2)}) == fingerprint({"x": [1, 2]})  # JSON has one array type
    # Values JSON cannot hold are hashed by their text, not refused.
    assert fingerprint({"x": {3}}) == fingerprint({"x": "{3}"})


def test_to_dict_is_the_documented_layout() -> None:
    assert STATE_VERSION == 2
    assert ReaderState("f", 12).to_dict() == {"version": 2, "fingerprint": "f", "position": 12}
    assert ReaderState("f", 12, {"position": 12, "x": [1]}, (Tail(2, (12, 15)),)).to_dict() == {
        "version": 2, "fingerprint": "f", "position": 12, "mixture": {"position": 12, "x": [1]},
        "tail": [{"world_size": 2, "ends": [12, 15]}],
    }


def test_a_version_1_state_is_a_version_2_state_without_a_tail() -> None:
    # Version 1 states hold a consumed prefix; the global stream did not change with version 2.
    saved = {"version": 1, "fingerprint": "f", "position": 7, "tail": [{"world_size": 1, "ends": [9]}]}
    assert ReaderState.from_dict(saved, expected_fingerprint="f") == ReaderState("f", 7)


_TAILS = st.lists(
    st.lists(st.integers(0, 1000), min_size=1, max_size=8).map(lambda e: Tail(len(e), tuple(e))), max_size=3
)


@given(st.integers(0, 2**62), st.booleans(), st.lists(st.integers(0, 100), max_size=5), _TAILS)
def test_save_and_restore_round_trip_through_json(
    position: int, with_mixture: bool, counts: list[int], tails: list[Tail]
) -> None:
    mixture = {"position": position, "counts": counts} if with_mixture else None
    shifted = tuple(Tail(t.world_size, tuple(position + e for e in t.ends)) for t in tails)
    state = ReaderState(fingerprint({"seed": 3}), position, mixture, shifted)
    saved = json.loads(json.dumps(state.to_dict()))
    restored = ReaderState.from_dict(saved, expected_fingerprint=state.fingerprint)
    assert restored == state
    assert restored.to_dict() == state.to_dict()


def test_a_stale_mixture_shortcut_is_dropped_not_trusted() -> None:
    saved = ReaderState("f", 10, {"position": 9}).to_dict()
    assert ReaderState.from_dict(saved, expected_fingerprint="f") == ReaderState("f", 10, None)


@pytest.mark.parametrize(
    "data",
    [{"fingerprint": "f", "position": 0}, {"version": 3, "fingerprint": "f", "position": 0}, [1, 2], None],
)
def test_another_version_or_no_state_is_refused(data: object) -> None:
    with pytest.raises(ValueError, match="not a reader state of version 1 or 2"):
        ReaderState.from_dict(data, expected_fingerprint="f")  # type: ignore[arg-type]


def test_another_streams_state_is_refused() -> None:
    saved = ReaderState("f", 5).to_dict()
    with pytest.raises(ValueError, match="belongs to another stream"):
        ReaderState.from_dict(saved, expected_fingerprint="g")


@pytest.mark.parametrize("position", [-1, 1.5, "3", True, None])
def test_a_position_that_is_not_a_non_negative_int_is_refused(position: object) -> None:
    saved = {"version": 1, "fingerprint": "f", "position": position}
    with pytest.raises(ValueError, match="is not a non-negative integer"):
        ReaderState.from_dict(saved, expected_fingerprint="f")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": True, "fingerprint": "f", "position": 0}, "not a reader state of version 1 or 2"),
        ({"version": 1, "fingerprint": 5, "position": 0}, "reader state fingerprint 5 is not a string"),
        ({"version": 1, "fingerprint": "f", "position": 0, "mixture": "x"}, "reader state mixture 'x' is not an object"),
        ({"version": 1, "fingerprint": "f", "position": 0, "mixture": [0]}, r"reader state mixture \[0\] is not an object"),
        (
            {"version": 1, "fingerprint": "f", "position": 3, "mixture": {"position": "3"}},
            "reader state mixture.position '3' is not a non-negative integer",
        ),
        ({"version": 1, "fingerprint": "f", "position": 2**63}, r"reader state position 9223372036854775808 is above 2\*\*63 - 1"),
        ({"version": 2, "fingerprint": "f", "position": 0, "tail": {}}, r"reader state tail \{\} is not a list"),
        (
            {"version": 2, "fingerprint": "f", "position": 0, "tail": [{"world_size": 1, "ends": [1]}] * (MAX_TAIL_LAYERS + 1)},
            "is not a list of at most 64 layers",
        ),
        ({"version": 2, "fingerprint": "f", "position": 0, "tail": [3]}, "reader state tail layer 3 is not an object"),
        ({"version": 2, "fingerprint": "f", "position": 0, "tail": [{"world_size": 0, "ends": []}]}, "world_size 0 is not an integer >= 1"),
        ({"version": 2, "fingerprint": "f", "position": 0, "tail": [{"world_size": 2, "ends": [1]}]}, r"ends \[1\] is not a list of 2"),
    ],
)
def test_a_state_with_a_field_of_the_wrong_type_is_refused_naming_it(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReaderState.from_dict(data, expected_fingerprint="f")
