"""Vectorized keyed hashing: the reader's only source of randomness.

A key is `transforms.hashing.stable_hash(seed, purpose, ...)` (sha256); the per-index
values are splitmix64 of (key, index) in numpy uint64 arithmetic. Both are pure functions
of their inputs, independent of process, machine and numpy version, so a shuffle or a
mixture draw can be recomputed anywhere from (seed, epoch, index) alone.

Invariants: `keyed_uniform` lies in [0, 1); `keyed_permutation(key, n)` is a permutation
of range(n); all three are deterministic in (key, indices).
"""

from __future__ import annotations

import numpy as np

from transforms.hashing import Part, stable_hash

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FLOAT_SCALE = 1.0 / float(1 << 53)


def key_of(*parts: Part) -> int:
    """A 64-bit key for one purpose, e.g. `key_of(seed, "units", dataset, task, epoch)`."""
    return stable_hash("gato-reader", *parts)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # uint64 array arithmetic wraps modulo 2**64, which is what splitmix64 wants.
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def keyed_hash(key: int, indices: np.ndarray) -> np.ndarray:
    """uint64 hash of each index under `key` (indices: non-negative integers)."""
    idx = np.asarray(indices, dtype=np.uint64)
    return _splitmix64(_splitmix64(idx) ^ np.uint64(key))


def keyed_uniform(key: int, indices: np.ndarray) -> np.ndarray:
    """float64 in [0, 1) per index: the top 53 bits of `keyed_hash`."""
    return (keyed_hash(key, indices) >> np.uint64(11)).astype(np.float64) * _FLOAT_SCALE


def keyed_permutation(key: int, n: int) -> np.ndarray:
    """A permutation of range(n) (int64): indices sorted by their keyed hash."""
    return np.argsort(keyed_hash(key, np.arange(n, dtype=np.uint64)), kind="stable")
