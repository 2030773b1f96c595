"""transforms/errors.py: a TokenizationError names episode, field, timestep and value; context is
filled in only where unknown; it survives pickling; `located` points at the first bad element."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from transforms.errors import (
    BAD_SHAPE,
    NON_FINITE,
    REASONS,
    TokenizationError,
    first_bad_index,
    located,
)


def test_the_message_names_everything_known_and_the_reason_code() -> None:
    e = TokenizationError(NON_FINITE, "NaN", episode="ep", field="observation/x", timestep=3, value=float("nan"))
    assert str(e) == "episode 'ep', field 'observation/x', timestep 3: NaN (value nan) [non_finite]"
    assert str(TokenizationError(BAD_SHAPE, "wrong shape")) == "wrong shape [bad_shape]"
    assert str(TokenizationError(BAD_SHAPE, "x", timestep=0, value=0)) == "timestep 0: x (value 0) [bad_shape]"
    assert isinstance(e, ValueError)


def test_unknown_reasons_are_refused() -> None:
    assert NON_FINITE in REASONS and len(REASONS) == 11
    with pytest.raises(ValueError, match="unknown tokenization error reason 'nan_value'"):
        TokenizationError("nan_value", "x")


def test_with_context_fills_only_what_is_missing() -> None:
    low = TokenizationError(NON_FINITE, "inf", timestep=2, value=float("inf"))
    full = low.with_context(episode="ep", field="action")
    assert (full.episode, full.field, full.timestep, full.value) == ("ep", "action", 2, float("inf"))
    assert str(full) == "episode 'ep', field 'action', timestep 2: inf (value inf) [non_finite]"
    kept = TokenizationError(NON_FINITE, "x", field="observation/a").with_context(episode="ep", field="action")
    assert kept.field == "observation/a" and kept.episode == "ep"
    assert low.episode is None  # a copy: the original is unchanged


def test_pickling_keeps_the_context() -> None:
    e = TokenizationError(NON_FINITE, "NaN", episode="ep", field="f", timestep=1, value=2.5)
    clone = pickle.loads(pickle.dumps(e))
    assert (clone.reason, clone.detail, clone.episode, clone.field, clone.timestep, clone.value) == (
        NON_FINITE, "NaN", "ep", "f", 1, 2.5)
    assert str(clone) == str(e)


def test_first_bad_index_is_row_major() -> None:
    bad = np.zeros((3, 4), dtype=bool)
    bad[2, 0] = bad[1, 3] = True
    assert first_bad_index(bad) == (1, 3)
    assert first_bad_index(np.array([False, True])) == (1,)


def test_located_reports_index_value_and_timestep_only_with_a_time_axis() -> None:
    values = np.array([[1.0, 2.0], [np.nan, 4.0]])
    e = located(NON_FINITE, "not finite", values, ~np.isfinite(values), leading_time_axis=True)
    assert (e.timestep, e.detail) == (1, "not finite at index (1, 0)")
    assert np.isnan(e.value) and isinstance(e.value, float)
    e = located(NON_FINITE, "not finite", values, ~np.isfinite(values), leading_time_axis=False)
    assert e.timestep is None and e.detail == "not finite at index (1, 0)"


def test_without_addresses_drops_only_the_memory_addresses_of_reprs() -> None:
    from transforms.errors import without_addresses

    text = "cannot identify image file <_io.BytesIO object at 0x7f3A2b1c0d90>; looked at 0xZ, read at 0x10 bytes"
    assert without_addresses(text) == "cannot identify image file <_io.BytesIO object>; looked at 0xZ, read bytes"
