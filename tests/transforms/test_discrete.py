"""Discrete encoding (spec section 2): exact ids, range edges, offsets, both layouts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.vocab import DISJOINT, GATO
from transforms.discrete import decode_discrete, encode_discrete
from transforms.errors import BAD_DTYPE, DISCRETE_OUT_OF_RANGE, TokenizationError


def test_gato_ids_share_the_text_range() -> None:
    x = np.array([[0, 1], [1022, 1023]], dtype=np.int64)
    tokens = encode_discrete(x)
    assert tokens.dtype == np.int32
    assert tokens.tolist() == [[0, 1], [1022, 1023]]


def test_disjoint_ids_follow_the_continuous_range() -> None:
    assert encode_discrete(np.array([0, 1023]), layout=DISJOINT).tolist() == [33024, 34047]


def test_bool_and_unsigned_dtypes() -> None:
    assert encode_discrete(np.array([True, False])).tolist() == [1, 0]
    assert encode_discrete(np.array([255], dtype=np.uint8)).tolist() == [255]


def test_offset_brings_values_into_range() -> None:
    assert encode_discrete(np.array([-1, 0, 1]), offset=1).tolist() == [0, 1, 2]
    assert decode_discrete(np.array([0, 1, 2]), offset=1).tolist() == [-1, 0, 1]


@pytest.mark.parametrize(
    ("value", "offset", "dtype"),
    [(-1, 0, np.int64), (1024, 0, np.int64), (1023, 1, np.int32), (-2, 1, np.int8),
     (2**64 - 1, 0, np.uint64), (-(2**63), 0, np.int64)],
)
def test_out_of_range_names_timestep_and_value(value: int, offset: int, dtype: type) -> None:
    x = np.zeros((3, 2), dtype=dtype)
    x[1, 0] = value
    with pytest.raises(TokenizationError) as info:
        encode_discrete(x, offset=offset, leading_time_axis=True)
    err = info.value
    assert err.reason == DISCRETE_OUT_OF_RANGE
    assert (err.timestep, err.value) == (1, value)
    assert "(1, 0)" in str(err) and str(value) in str(err)


def test_floats_are_a_dtype_error() -> None:
    with pytest.raises(TokenizationError) as info:
        encode_discrete(np.array([1.0]))
    assert info.value.reason == BAD_DTYPE and "float64" in str(info.value)


def test_decode_rejects_ids_outside_the_layout() -> None:
    with pytest.raises(ValueError, match="not a discrete id"):
        decode_discrete(np.array([1024]))
    with pytest.raises(ValueError, match="not a discrete id"):
        decode_discrete(np.array([5]), layout=DISJOINT)


@given(
    st.lists(st.integers(min_value=-5, max_value=1018), min_size=1, max_size=30),
    st.sampled_from([GATO, DISJOINT]),
)
def test_round_trip_is_exact(values: list[int], layout: object) -> None:
    x = np.array(values, dtype=np.int16)
    tokens = encode_discrete(x, offset=5, layout=layout)  # type: ignore[arg-type]
    assert decode_discrete(tokens, offset=5, layout=layout).tolist() == values  # type: ignore[arg-type]
