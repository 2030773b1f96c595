"""Stable, process-independent randomness: sha256 of a canonical encoding of the parts.

Every random choice in the project (which sequences get a prompt, which prompt episode,
where a prompt window starts) comes from here, so that the same input and seed give the
same output on any machine, worker or Python version (`hash()` is salted per process,
global RNG state depends on call order; neither is used).

Invariants:
- `stable_hash(*parts)` is an int in [0, 2**64), a pure function of the parts' values
  and types: `stable_hash(1) != stable_hash("1")`, `stable_hash("a", "b") !=
  stable_hash("ab")`, `stable_hash(("a", "b")) != stable_hash("a", "b")`;
- `stable_uniform(*parts)` is a float in [0, 1) with 53 random bits;
- `stable_randrange(n, *parts)` is an int in [0, n), uniform up to a bias < n / 2**64.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable

import numpy as np

Part = str | bytes | int | float | bool | None | tuple["Part", ...] | list["Part"]

_HASH_BITS = 64
_FLOAT_BITS = 53  # a double's mantissa: every value k / 2**53 is exact


def _encode(part: object, out: list[bytes]) -> None:
    """Append a type-tagged, length-prefixed encoding of `part` (injective over Part)."""
    # bool before int: bool is an int subclass, but True and 1 must hash differently.
    if isinstance(part, (bool, np.bool_)):
        out.append(b"B" + (b"\x01" if part else b"\x00"))
    elif isinstance(part, (int, np.integer)):
        text = str(int(part)).encode("ascii")
        out.append(b"I" + struct.pack(">Q", len(text)) + text)
    elif isinstance(part, (float, np.floating)):
        value = float(part)
        if math.isnan(value):
            raise ValueError("stable_hash: NaN has no stable identity; pass a finite value")
        # repr round-trips exactly; -0.0 and 0.0 stay distinct.
        text = repr(value).encode("ascii")
        out.append(b"F" + struct.pack(">Q", len(text)) + text)
    elif isinstance(part, str):
        data = part.encode("utf-8")
        out.append(b"S" + struct.pack(">Q", len(data)) + data)
    elif isinstance(part, (bytes, bytearray, memoryview)):
        data = bytes(part)
        out.append(b"Y" + struct.pack(">Q", len(data)) + data)
    elif part is None:
        out.append(b"N")
    elif isinstance(part, (tuple, list)):
        out.append(b"T" + struct.pack(">Q", len(part)))
        for item in part:
            _encode(item, out)
    else:
        raise TypeError(
            f"stable_hash: unsupported part {part!r} of type {type(part).__name__}; "
            "use str, bytes, int, float, bool, None or tuples of them"
        )


def _digest(parts: Iterable[object]) -> bytes:
    chunks: list[bytes] = []
    for part in parts:
        _encode(part, chunks)
    return hashlib.sha256(b"".join(chunks)).digest()


def stable_hash(*parts: Part) -> int:
    """An int in [0, 2**64): the first 8 bytes (big-endian) of sha256 over the parts."""
    return int.from_bytes(_digest(parts)[: _HASH_BITS // 8], "big")


def stable_uniform(*parts: Part) -> float:
    """A float in [0, 1): the top 53 bits of `stable_hash(*parts)` over 2**53."""
    return (stable_hash(*parts) >> (_HASH_BITS - _FLOAT_BITS)) / float(1 << _FLOAT_BITS)


def stable_randrange(n: int, *parts: Part) -> int:
    """An int in [0, n) from `stable_hash(*parts)` (n >= 1)."""
    if n < 1:
        raise ValueError(f"stable_randrange needs n >= 1, got {n}")
    return stable_hash(*parts) % n


# Encodings of recent `rest` tuples of plain ints and strs (a row's index and a constant
# tag, asked for again by every episode): the encoding is most of a short hash's cost.
# Keyed with the parts' types, so that True and 1 (equal, hashed alike) never share one;
# floats are never cached (-0.0 == 0.0).
_CACHEABLE = (int, str)
_ENCODED_LIMIT = 4096
_encoded_cache: dict[tuple[tuple[type, ...], tuple[Part, ...]], bytes] = {}


def _encoded_rest(rest: tuple[Part, ...]) -> bytes:
    """The encoding of the parts `rest` (`_encode`'s), cached for plain ints and strs."""
    types = tuple(map(type, rest))
    cacheable = all(t in _CACHEABLE for t in types)
    if cacheable:
        cached = _encoded_cache.get((types, rest))
        if cached is not None:
            return cached
    chunks: list[bytes] = []
    for part in rest:
        _encode(part, chunks)
    encoded = b"".join(chunks)
    if cacheable:
        if len(_encoded_cache) >= _ENCODED_LIMIT:
            _encoded_cache.clear()  # bounded: callers may hash unbounded keys (record ids)
        _encoded_cache[(types, rest)] = encoded
    return encoded


class HashPrefix:
    """`stable_hash(*prefix, *rest)` for many `rest` after one prefix (the rows of an episode).

    Invariant: `HashPrefix(*a).hash(*b) == stable_hash(*a, *b)` (and likewise `uniform`,
    `randrange`): sha256 is fed the prefix's encoding once and copied per call, since
    the encoding of the parts is the concatenation of each part's.
    """

    def __init__(self, *prefix: Part) -> None:
        chunks: list[bytes] = []
        for part in prefix:
            _encode(part, chunks)
        self._sha = hashlib.sha256(b"".join(chunks))

    def hash(self, *rest: Part) -> int:
        sha = self._sha.copy()
        sha.update(_encoded_rest(rest))
        return int.from_bytes(sha.digest()[: _HASH_BITS // 8], "big")

    def uniform(self, *rest: Part) -> float:
        return (self.hash(*rest) >> (_HASH_BITS - _FLOAT_BITS)) / float(1 << _FLOAT_BITS)

    def randrange(self, n: int, *rest: Part) -> int:
        if n < 1:
            raise ValueError(f"stable_randrange needs n >= 1, got {n}")
        return self.hash(*rest) % n
