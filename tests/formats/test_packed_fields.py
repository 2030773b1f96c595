"""formats/packed_fields.py: numpy decoding of packed FloatList/Int64List equals protobuf's values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_datasets.proto import tf_example_pb2

from formats.packed_fields import packed_floats, packed_varints

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _feature() -> tf_example_pb2.Feature:
    return tf_example_pb2.Example().features.feature["x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(INT64, st.integers(0, 300)), max_size=200))
def test_int64_lists_decode_as_protobuf_gives_them(values: list[int]) -> None:
    feature = _feature()
    feature.int64_list.value.extend(values)
    old = np.asarray(feature.int64_list.value, dtype=np.int64)
    new = packed_varints(feature.int64_list.SerializeToString())
    assert new.dtype == np.int64 and np.array_equal(new, old)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=200))
def test_float_lists_decode_as_protobuf_gives_them(values: list[float]) -> None:
    feature = _feature()
    feature.float_list.value.extend(values)
    old = np.asarray(feature.float_list.value, dtype=np.float32)
    new = packed_floats(feature.float_list.SerializeToString())
    assert new.dtype == np.float32 and old.tobytes() == new.tobytes()  # -0.0 and NaN bits too


def test_edges() -> None:
    feature = _feature()
    edges = [0, 1, 127, 128, 2**31, 2**63 - 1, -1, -(2**63)]
    feature.int64_list.value.extend(edges)
    assert packed_varints(feature.int64_list.SerializeToString()).tolist() == edges
    assert packed_varints(b"").size == 0 and packed_floats(b"").size == 0
    long_payload = _feature()
    long_payload.int64_list.value.extend([5] * 300)  # a two-byte payload length
    assert packed_varints(long_payload.int64_list.SerializeToString()).tolist() == [5] * 300
    with pytest.raises(ValueError, match="packed"):
        packed_varints(b"\x08\x01")  # an unpacked field is not what proto3 serializes
