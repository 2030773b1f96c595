"""formats/tfrecord.py: TFRecord framing without TensorFlow, checked against TensorFlow's own files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import pickle
import struct

from formats.tfrecord import CorruptRecord, frame_record, iter_framed, iter_records, masked_crc32c


def tf_records(path: str) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(path)]


# --- Framing ---------------------------------------------------------------------------------


def test_masked_crc_is_crc32c_rotated_plus_tfrecords_constant() -> None:
    crc = 0xE3069283  # CRC-32C's standard check value, of b"123456789"
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"") == 0xA282EAD8  # crc32c(b"") is 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_framing_round_trips_and_tensorflow_reads_it(records: list[bytes]) -> None:
    data = b"".join(frame_record(r) for r in records)
    assert list(iter_records(io.BytesIO(data))) == records


def test_our_framing_is_the_file_tensorflow_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "x.tfrecord")
    payloads = [b"", b"a", b"episode" * 100, bytes(range(256))]
    with tf.io.TFRecordWriter(path) as writer:
        for p in payloads:
            writer.write(p)
    raw = Path(path).read_bytes()
    assert raw == b"".join(frame_record(p) for p in payloads)
    with open(path, "rb") as f:
        assert list(iter_records(f)) == payloads == tf_records(path)


def test_every_truncation_point_is_reported_after_the_whole_records() -> None:
    first, second = frame_record(b"first record"), frame_record(b"second")
    data = first + second
    for cut in range(len(first) + 1, len(data)):
        stream = iter_records(io.BytesIO(data[:cut]))
        assert next(stream) == b"first record"
        with pytest.raises(CorruptRecord, match=f"^truncated record at {len(first)}( \\(.*\\))?$"):
            next(stream)


@pytest.mark.parametrize("where, what", [(3, "length"), (9, "length"), (14, "data"), (-2, "data")])
def test_a_flipped_byte_is_a_checksum_mismatch(where: int, what: str) -> None:
    data = bytearray(frame_record(b"0123456789"))
    data[where] ^= 0x40
    with pytest.raises(CorruptRecord, match=f"^corrupted record at 0 \\({what} checksum mismatch\\)$"):
        list(iter_records(io.BytesIO(bytes(data))))


def test_a_data_checksum_mismatch_loses_only_its_record() -> None:
    bad = bytearray(frame_record(b"second record"))
    bad[14] ^= 0x01  # inside the data: its length and the length's checksum are intact
    data = frame_record(b"first") + bytes(bad) + frame_record(b"third")
    out = list(iter_framed(io.BytesIO(data)))
    assert out[0] == b"first" and out[2] == b"third" and len(out) == 3
    assert isinstance(out[1], CorruptRecord) and not out[1].framing_lost and out[1].offset == 21
    assert str(out[1]) == "corrupted record at 21 (data checksum mismatch)"
    with pytest.raises(CorruptRecord, match="data checksum mismatch"):
        list(iter_records(io.BytesIO(data)))


def test_lost_framing_ends_the_stream_after_one_fault() -> None:
    bad = bytearray(frame_record(b"second record"))
    bad[9] ^= 0x01  # the length's checksum: where the next record starts is unknown
    out = list(iter_framed(io.BytesIO(frame_record(b"first") + bytes(bad) + frame_record(b"third"))))
    assert out[0] == b"first" and len(out) == 2
    assert out[1].framing_lost and str(out[1]) == "corrupted record at 21 (length checksum mismatch)"
    restored = pickle.loads(pickle.dumps(out[1]))
    assert (str(restored), restored.offset, restored.framing_lost) == (str(out[1]), 21, True)


def test_a_crafted_huge_length_is_a_truncated_record_not_a_memory_error() -> None:
    length = struct.pack("<Q", 1 << 40)  # with a valid checksum: only the file's size can refute it
    crafted = length + struct.pack("<I", masked_crc32c(length)) + b"tiny" + b"\0" * 4
    data = frame_record(b"first") + crafted
    out = list(iter_framed(io.BytesIO(data)))
    assert out[0] == b"first" and len(out) == 2 and out[1].framing_lost and out[1].offset == 21
    assert str(out[1]) == (
        "truncated record at 21 (its length 1099511627776 is more than the 4 bytes left in the file)"
    )


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_huge_length_in_an_unseekable_stream_reads_only_what_exists() -> None:
    length = struct.pack("<Q", 1 << 40)
    crafted = length + struct.pack("<I", masked_crc32c(length)) + b"tiny"
    with pytest.raises(CorruptRecord, match="^truncated record at 0$"):
        list(iter_records(_Unseekable(crafted)))
