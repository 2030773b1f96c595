"""Continuous encoding (spec section 2): exact tokens at the edges, reference formula, round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.vocab import DISJOINT, GATO, MU, MU_LAW_M, NUM_BINS, Encoding
from transforms.continuous import (
    bins_to_values,
    encode_bins,
    encode_continuous,
    mu_law_decode,
    mu_law_encode,
    tokens_to_values,
)
from transforms.errors import BAD_DTYPE, NON_FINITE, TokenizationError

TINY = 5e-324  # the smallest positive double (subnormal)


def reference_bin(x: float, encoding: str) -> int:
    """Spec section 2 written as plain scalar Python: the independent oracle."""
    if encoding == "mu_law":
        f = math.copysign(math.log1p(MU * abs(x)) / math.log1p(MU * MU_LAW_M), x)
    else:
        f = x
    f = min(max(f, -1.0), 1.0)
    return min(math.floor((f + 1.0) / 2.0 * NUM_BINS), NUM_BINS - 1)


# Hand-derived: F(1) = ln 101 / ln 25601 = 0.454672..., (1 + F) * 512 = 744.79.
MU_LAW_EDGES = [
    (0.0, 512), (-0.0, 512), (TINY, 512), (-TINY, 512),
    (1.0, 744), (-1.0, 279),
    (256.0, 1023), (-256.0, 0),  # F = +-1 exactly: 1024 clamps to 1023
    (1e6, 1023), (-1e6, 0),
    (255.0, 1023), (-255.0, 0),
]
LINEAR_EDGES = [
    (0.0, 512), (-0.0, 512), (TINY, 512), (-TINY, 512),
    (1.0, 1023), (-1.0, 0), (0.5, 768), (-0.5, 256),
    (256.0, 1023), (-256.0, 0), (1e6, 1023), (-1e6, 0),
    (-(2.0**-20), 511),  # just below zero, far enough that F + 1 < 1
    (1.0 - 2.0**-9, 1023),  # (F + 1) * 512 == 1023 exactly: the first value of bin 1023
    # The last value of bin 1022 that survives F + 1 (spacing 2**-52 in [1, 2)).
    (1.0 - 2.0**-9 - 2.0**-52, 1022),
]


@pytest.mark.parametrize(("x", "expected"), MU_LAW_EDGES)
def test_mu_law_edges(x: float, expected: int) -> None:
    assert int(encode_bins(np.array([x]), Encoding.MU_LAW)[0]) == expected
    assert reference_bin(x, "mu_law") == expected


@pytest.mark.parametrize(("x", "expected"), LINEAR_EDGES)
def test_linear_edges(x: float, expected: int) -> None:
    assert int(encode_bins(np.array([x]), Encoding.LINEAR)[0]) == expected
    assert reference_bin(x, "linear") == expected


def test_tokens_are_offset_bins_in_both_layouts() -> None:
    x = np.array([-1e6, 0.0, 1.0, 1e6])
    assert encode_continuous(x, Encoding.MU_LAW).tolist() == [32000, 32512, 32744, 33023]
    # continuous ids are [32000, 33024) in both layouts
    assert encode_continuous(x, Encoding.MU_LAW, layout=DISJOINT).tolist() == [32000, 32512, 32744, 33023]
    assert GATO.continuous_offset == DISJOINT.continuous_offset == 32000


def test_shape_and_row_major_order_are_kept() -> None:
    x = np.array([[0.0, 1.0, -1.0], [256.0, -256.0, 0.5]], dtype=np.float32)
    bins = encode_bins(x, Encoding.MU_LAW)
    assert bins.dtype == np.int32 and bins.shape == (2, 3)
    assert bins.ravel().tolist() == [reference_bin(float(v), "mu_law") for v in x.ravel()]


def test_integer_inputs_are_encoded_as_their_values() -> None:
    ints = np.array([0, 1, -1, 256, np.iinfo(np.int64).min], dtype=np.int64)
    assert encode_bins(ints, Encoding.MU_LAW).tolist() == [512, 744, 279, 1023, 0]


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_index_timestep_and_value(encoding: Encoding, bad: float) -> None:
    x = np.zeros((4, 3))
    x[2, 1] = bad
    with pytest.raises(TokenizationError) as info:
        encode_bins(x, encoding, leading_time_axis=True)
    err = info.value
    assert err.reason == NON_FINITE
    assert err.timestep == 2
    assert "(2, 1)" in str(err)
    assert (math.isnan(err.value) if math.isnan(bad) else err.value == bad)


def test_overflowing_mu_times_x_is_not_mistaken_for_inf() -> None:
    # 100 * 1e308 overflows to inf inside the kernel; the input itself is finite.
    assert encode_bins(np.array([1e308, -1e308]), Encoding.MU_LAW).tolist() == [1023, 0]


def test_non_numeric_dtype_is_rejected() -> None:
    with pytest.raises(TokenizationError) as info:
        encode_bins(np.array(["a"]), Encoding.MU_LAW)
    assert info.value.reason == BAD_DTYPE


def test_large_input_crosses_chunk_boundaries_consistently() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(scale=50.0, size=50_000)
    bins = encode_bins(x, Encoding.MU_LAW)
    sample = rng.choice(x.shape[0], 500, replace=False)
    assert [int(bins[i]) for i in sample] == [reference_bin(float(x[i]), "mu_law") for i in sample]


def test_bin_centers() -> None:
    assert bins_to_values(np.array([0, 511, 512, 1023]), Encoding.LINEAR).tolist() == [
        -1.0 + 0.5 / 512, -0.5 / 512, 0.5 / 512, 1.0 - 0.5 / 512,
    ]
    assert mu_law_decode(mu_law_encode(256.0)) == pytest.approx(256.0)
    with pytest.raises(ValueError, match="outside"):
        bins_to_values(np.array([1024]), Encoding.LINEAR)
    with pytest.raises(ValueError, match="outside"):
        tokens_to_values(np.array([31999]), Encoding.LINEAR)


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300)
@given(st.lists(finite, min_size=1, max_size=20))
def test_vectorized_kernel_matches_the_reference_formula(xs: list[float]) -> None:
    x = np.array(xs)
    for encoding in Encoding:
        assert encode_bins(x, encoding).tolist() == [reference_bin(v, encoding.value) for v in xs]


@settings(max_examples=300)
@given(finite)
def test_decode_encode_is_within_half_a_bin(x: float) -> None:
    """For any finite x: the decoded value, in F-space, is within half a bin of F(clip(x))."""
    half_bin = 1.0 / NUM_BINS  # bins are 2/1024 wide in F-space
    for encoding in Encoding:
        token = encode_continuous(np.array([x]), encoding)
        back = float(tokens_to_values(token, encoding)[0])
        if encoding is Encoding.MU_LAW:
            f_x = max(-1.0, min(1.0, float(mu_law_encode(x))))
            f_back = float(mu_law_encode(back))
        else:
            f_x, f_back = max(-1.0, min(1.0, x)), back
        assert abs(f_back - f_x) <= half_bin + 1e-12


@given(st.floats(min_value=-1.0, max_value=1.0))
def test_linear_round_trip_in_value_space(x: float) -> None:
    back = float(tokens_to_values(encode_continuous(np.array([x]), Encoding.LINEAR), Encoding.LINEAR)[0])
    assert abs(back - x) <= 1.0 / NUM_BINS + 1e-12
