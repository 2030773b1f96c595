"""stable_hash / stable_uniform: pinned values, canonical-encoding edge cases, ranges."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.hashing import HashPrefix, stable_hash, stable_randrange, stable_uniform


def _framed(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack(">Q", len(data)) + data


def test_pinned_values_never_change() -> None:
    # Changing these breaks reproducibility of every published output: don't.
    assert stable_hash() == 16406829232824261652
    assert stable_hash("seed", "task", "ep", 3) == 3859690211910345082
    assert stable_uniform("seed", "task", "ep", 3) == 0.20923422564371164


def test_matches_the_documented_encoding() -> None:
    data = _framed(b"S", b"seed") + _framed(b"I", b"3")
    expected = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    assert stable_hash("seed", 3) == expected


def test_same_in_a_fresh_interpreter() -> None:
    # PYTHONHASHSEED differs per process; the value must not.
    out = subprocess.run(
        [sys.executable, "-c",
         "from transforms.hashing import stable_hash; print(stable_hash('a', 1, b'x'))"],
        capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    assert int(out.stdout) == stable_hash("a", 1, b"x")


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ((1,), ("1",)),
        (("a", "b"), ("ab",)),
        ((("a", "b"),), ("a", "b")),
        ((True,), (1,)),
        ((b"a",), ("a",)),
        ((0.0,), (-0.0,)),
        ((1.0,), (1,)),
        ((None,), ("",)),
        (("",), ()),
    ],
)
def test_distinct_parts_give_distinct_hashes(left: tuple, right: tuple) -> None:
    assert stable_hash(*left) != stable_hash(*right)


def test_numpy_scalars_hash_like_python_scalars() -> None:
    assert stable_hash(np.int64(7), np.float32(0.5), np.bool_(True)) == stable_hash(7, 0.5, True)
    assert stable_hash([1, "a"]) == stable_hash((1, "a"))


def test_rejects_nan_and_unknown_types() -> None:
    with pytest.raises(ValueError, match="NaN"):
        stable_hash(float("nan"))
    with pytest.raises(TypeError, match="unsupported part"):
        stable_hash(object())
    with pytest.raises(ValueError, match="n >= 1"):
        stable_randrange(0, "x")


@given(st.lists(st.one_of(st.text(), st.integers(), st.binary()), max_size=4))
def test_ranges(parts: list) -> None:
    h = stable_hash(*parts)
    assert 0 <= h < 2**64
    u = stable_uniform(*parts)
    assert 0.0 <= u < 1.0
    assert 0 <= stable_randrange(7, *parts) < 7


def test_uniform_is_roughly_uniform() -> None:
    values = np.array([stable_uniform("u", i) for i in range(4000)])
    counts = np.histogram(values, bins=10, range=(0.0, 1.0))[0]
    # 400 expected per bin, sd 19: 6 sd either way.
    assert counts.min() > 285 and counts.max() < 515


PARTS = st.recursive(
    st.one_of(st.integers(), st.text(max_size=8), st.binary(max_size=8), st.booleans(), st.none(),
              st.floats(allow_nan=False)),
    lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PARTS, max_size=4), st.lists(PARTS, max_size=4), st.integers(1, 1000))
def test_a_hash_prefix_gives_stable_hash_of_all_the_parts(prefix: list, rest: list, n: int) -> None:
    row = HashPrefix(*prefix)
    assert row.hash(*rest) == stable_hash(*prefix, *rest)
    assert row.uniform(*rest) == stable_uniform(*prefix, *rest)
    assert row.randrange(n, *rest) == stable_randrange(n, *prefix, *rest)


def test_cached_encodings_keep_equal_parts_of_other_types_apart() -> None:
    """The prefix caches the encoding of int and str parts: True after 1 (equal, hashed
    alike in a dict), numpy ints and floats must still hash as `stable_hash` does."""
    prefix = HashPrefix("seed", "task", "episode")
    for rest in [(1, "prompt"), (True, "prompt"), (1, "prompt"), (np.int64(1), "prompt"), (1.0, "prompt"),
                 (0.0,), (-0.0,), ("1", "prompt"), (1, "prompt")]:
        assert prefix.hash(*rest) == stable_hash("seed", "task", "episode", *rest), rest
    assert prefix.hash(True, "prompt") != prefix.hash(1, "prompt")


def test_the_encoding_cache_stays_bounded() -> None:
    from transforms import hashing

    prefix = HashPrefix("seed")
    for i in range(hashing._ENCODED_LIMIT + 10):
        assert prefix.hash(f"record-{i}") == stable_hash("seed", f"record-{i}")
    assert len(hashing._encoded_cache) <= hashing._ENCODED_LIMIT
