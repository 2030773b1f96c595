"""Discrete values -> tokens (spec section 2): flatten row-major, range-check, shift.

A value v of a field with declared `offset` becomes bin v + offset, which must lie in
[0, 1024); its token is `layout.discrete_offset + bin` (0 for `gato`, 33024 for
`disjoint`). Integer and bool dtypes only: a float field is a spec mistake, not a value
to round.
"""

from __future__ import annotations

import numpy as np

from schemas.vocab import GATO, NUM_BINS, VocabLayout
from transforms.errors import (
    BAD_DTYPE,
    DISCRETE_OUT_OF_RANGE,
    TokenizationError,
    located,
)


def encode_discrete(
    values: np.ndarray,
    *,
    offset: int = 0,
    layout: VocabLayout = GATO,
    leading_time_axis: bool = False,
) -> np.ndarray:
    """Token ids (int32, same shape as `values`, so row-major order is `.ravel()`).

    Raises `TokenizationError` `bad_dtype` for non-integer values and
    `discrete_out_of_range` for the first value with v + offset outside [0, 1024)
    (its index, timestep when `leading_time_axis`, and value).
    """
    x = _checked(values, offset=offset, leading_time_axis=leading_time_axis)
    tokens = x.astype(np.int32)
    tokens += np.int32(layout.discrete_offset + offset)
    return tokens


def check_discrete(values: np.ndarray, *, offset: int = 0, leading_time_axis: bool = False) -> None:
    """Raises what `encode_discrete` raises for `values`, without making tokens."""
    _checked(values, offset=offset, leading_time_axis=leading_time_axis)


def _checked(values: np.ndarray, *, offset: int, leading_time_axis: bool) -> np.ndarray:
    """`values` as an integer array, every value checked to fit the bins with `offset`."""
    x = np.asarray(values)
    if x.dtype.kind == "b":
        x = x.view(np.uint8)
    if x.dtype.kind not in "iu":
        raise TokenizationError(
            BAD_DTYPE, f"discrete values must be integer or bool, got dtype {x.dtype}"
        )
    # Compare in the native dtype (numpy 2 compares against out-of-range Python ints
    # exactly), so huge uint64 values cannot wrap into range on a cast.
    lo, hi = -offset, NUM_BINS - 1 - offset
    bad = (x < lo) | (x > hi)
    if bad.any():
        raise located(
            DISCRETE_OUT_OF_RANGE,
            f"discrete value + offset {offset} outside [0, {NUM_BINS})",
            x,
            bad,
            leading_time_axis=leading_time_axis,
        )
    return x


def decode_discrete(
    tokens: np.ndarray, *, offset: int = 0, layout: VocabLayout = GATO
) -> np.ndarray:
    """Inverse of `encode_discrete`: int64 values (ids outside the layout's range are an error)."""
    t = np.asarray(tokens).astype(np.int64)
    bad = (t < layout.discrete_offset) | (t >= layout.discrete_offset + NUM_BINS)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"token {int(t[index])} at index {index} is not a discrete id of layout "
            f"{layout.name!r} ([{layout.discrete_offset}, {layout.discrete_offset + NUM_BINS}))"
        )
    return t - (layout.discrete_offset + offset)
