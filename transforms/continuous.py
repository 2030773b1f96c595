"""Continuous values -> tokens (spec section 2): mu-law or linear, then 1024 uniform bins.

All arithmetic is float64. The reference formula, which the vectorized code reproduces
bit for bit (scaling by powers of two commutes with rounding):

    F = sign(x) * log1p(mu * |x|) / log1p(mu * M)     (mu_law)   or   F = x   (linear)
    bin = min(floor((clip(F, -1, 1) + 1) / 2 * 1024), 1023)
    token = layout.continuous_offset + bin

`log1p(mu * M)` is computed with the same function as the numerator, so F(+-M) is
exactly +-1. Note the float consequence of the formula at zero: every |x| so small that
F + 1 rounds to 1 (including -0.0 and tiny negatives) lands in bin 512.
"""

from __future__ import annotations

import numpy as np

from schemas.vocab import GATO, MU, MU_LAW_M, NUM_BINS, Encoding, VocabLayout
from transforms.errors import BAD_DTYPE, NON_FINITE, TokenizationError, located

# log1p(mu * M): the mu-law normaliser, via the same libm call as the numerator.
_LOG_MU_M = float(np.log1p(np.float64(MU * MU_LAW_M)))
_HALF_BINS = NUM_BINS / 2  # (F + 1) / 2 * 1024 == (F + 1) * 512, exactly
_LAST_BIN = float(NUM_BINS - 1)
# Work in cache-sized chunks: each ufunc pass then reads/writes L2, not RAM, and the
# float64 scratch buffer is allocated once per call instead of once per pass.
_CHUNK = 1 << 14


def mu_law_encode(x: np.ndarray | float) -> np.ndarray:
    """F(x) = sign(x) * ln(1 + mu|x|) / ln(1 + mu M), float64, not clipped."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):  # mu*|x| -> inf for |x| > ~1.8e306: F = +-inf, clipped later
        return np.copysign(np.log1p(MU * np.abs(x)) / _LOG_MU_M, x)


def mu_law_decode(y: np.ndarray | float) -> np.ndarray:
    """Inverse of `mu_law_encode`: sign(y) * (exp(|y| ln(1 + mu M)) - 1) / mu, float64."""
    y = np.asarray(y, dtype=np.float64)
    return np.copysign(np.expm1(np.abs(y) * _LOG_MU_M) / MU, y)


def _check_dtype(x: np.ndarray) -> None:
    if x.dtype.kind not in "fiu":
        raise TokenizationError(
            BAD_DTYPE,
            f"continuous values must be float or integer, got dtype {x.dtype}",
        )


def _raise_non_finite(x: np.ndarray, *, leading_time_axis: bool) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        raise located(
            NON_FINITE, "continuous value is NaN or infinite", x, bad,
            leading_time_axis=leading_time_axis,
        )


def check_continuous(values: np.ndarray, *, leading_time_axis: bool = False) -> None:
    """Raises what `encode_bins` raises for `values` (either encoding), without encoding:
    `bad_dtype`, or `non_finite` naming the first NaN or infinite value."""
    x = np.asarray(values)
    _check_dtype(x)
    if x.dtype.kind == "f":
        # A finite sum has no NaN or inf; an infinite one may be an overflow: look exactly.
        with np.errstate(over="ignore"):
            if not np.isfinite(np.add.reduce(x.reshape(-1), dtype=np.float64)):
                _raise_non_finite(x, leading_time_axis=leading_time_axis)


def encode_bins(
    values: np.ndarray, encoding: Encoding, *, leading_time_axis: bool = False
) -> np.ndarray:
    """Bins in [0, 1023], int32, same shape as `values` (so row-major order is `.ravel()`).

    NaN/inf raise `TokenizationError('non_finite')`; with `leading_time_axis` its
    timestep is the first index of the offending value.
    """
    encoding = Encoding(encoding)
    x = np.asarray(values)
    _check_dtype(x)
    if x.dtype.kind in "iu":
        # Exact for |x| < 2**53; also avoids abs() overflow of the most negative int.
        x = x.astype(np.float64)
    flat = x.reshape(-1)
    n = flat.shape[0]
    out = np.empty(n, dtype=np.int32)
    buf = np.empty(min(n, _CHUNK), dtype=np.float64)
    mu_law = encoding is Encoding.MU_LAW
    with np.errstate(over="ignore"):  # huge finite values overflow the sums; handled below
        _encode_chunks(flat, out, buf, mu_law, x, leading_time_axis)
    return out.reshape(x.shape)


def _encode_chunks(
    flat: np.ndarray,
    out: np.ndarray,
    buf: np.ndarray,
    mu_law: bool,
    x: np.ndarray,
    leading_time_axis: bool,
) -> None:
    n = flat.shape[0]
    for start in range(0, n, _CHUNK):
        xs = flat[start : start + _CHUNK]
        b = buf[: xs.shape[0]]
        if mu_law:
            np.abs(xs, out=b)
            np.multiply(b, MU, out=b)
            np.log1p(b, out=b)
            # log1p of a finite value is finite (<= ~710), so a non-finite sum means a
            # NaN/inf input -- or mu*|x| overflowed, which the exact check sorts out.
            if not np.isfinite(np.add.reduce(b)):
                _raise_non_finite(x, leading_time_axis=leading_time_axis)
            np.divide(b, _LOG_MU_M, out=b)
            np.minimum(b, 1.0, out=b)
            np.copysign(b, xs, out=b)
        else:
            if not np.isfinite(np.add.reduce(xs, dtype=np.float64)):
                _raise_non_finite(x, leading_time_axis=leading_time_axis)
            np.clip(xs, -1.0, 1.0, out=b)
        np.add(b, 1.0, out=b)
        np.multiply(b, _HALF_BINS, out=b)
        np.minimum(b, _LAST_BIN, out=b)
        # b is in [0, 1023] here, so truncation toward zero is floor.
        np.copyto(out[start : start + xs.shape[0]], b, casting="unsafe")


def encode_continuous(
    values: np.ndarray,
    encoding: Encoding,
    *,
    layout: VocabLayout = GATO,
    leading_time_axis: bool = False,
) -> np.ndarray:
    """Token ids (int32, same shape as `values`): `layout.continuous_offset + bin`."""
    bins = encode_bins(values, encoding, leading_time_axis=leading_time_axis)
    bins += np.int32(layout.continuous_offset)
    return bins


def bins_to_values(bins: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Bin centers mapped back through the inverse of F (float64, same shape).

    The result is within half a bin (in F-space) of any value that produced the bin,
    for values inside the encodable range ([-M, M] mu_law, [-1, 1] linear).
    """
    encoding = Encoding(encoding)
    b = np.asarray(bins)
    if b.dtype.kind not in "iu":
        raise ValueError(f"bins must be integers, got dtype {b.dtype}")
    bad = (b < 0) | (b >= NUM_BINS)
    if bad.any():
        raise ValueError(
            f"bin {b[tuple(np.argwhere(bad)[0])]!r} outside [0, {NUM_BINS}) at index "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}"
        )
    centers = (b.astype(np.float64) + 0.5) / _HALF_BINS - 1.0
    if encoding is Encoding.MU_LAW:
        return mu_law_decode(centers)
    return centers


def tokens_to_values(
    tokens: np.ndarray, encoding: Encoding, *, layout: VocabLayout = GATO
) -> np.ndarray:
    """`bins_to_values` for token ids of `layout` (ids outside the range are an error)."""
    return bins_to_values(
        np.asarray(tokens).astype(np.int64) - layout.continuous_offset, encoding
    )
