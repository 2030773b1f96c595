"""TFRecord framing without TensorFlow: the records of one shard file, both checksums verified.

Why not TensorFlow: its tf.data reader and traced parser cost ~7x more per record than
this module and `formats/tf_example.py` on our episodes, spread over TensorFlow's own
threads (so a second worker process gains little), and importing TensorFlow costs each
worker ~3 s and ~500 MB.

Each record is `uint64 length | uint32 masked crc32c(length) | data | uint32 masked
crc32c(data)`, little-endian. `iter_framed` yields one record at a time (memory: one
record, never more than the file holds) and a `CorruptRecord` in place of a record that
cannot be read: a short read is "truncated record at <offset>", a checksum mismatch
"corrupted record at <offset>" (TensorFlow's own wording), a length longer than the rest
of the file "record at <offset> claims N bytes, M are left". A data checksum mismatch
loses only that record (its length was verified, so the next record starts where it
says); any other fault loses the framing (`CorruptRecord.framing_lost`): nothing after
it is read. `iter_records` is the strict form: it raises at the first fault.
`frame_record` is the inverse, for tests.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
_READ_CHUNK = 64 << 20  # a record is read in pieces of at most this: memory follows the bytes read


class CorruptRecord(ValueError):
    """A TFRecord that cannot be read (truncated, too long, or a checksum mismatch).

    `framing_lost`: the records after it cannot be found (all but a data checksum
    mismatch); `offset`: where the record starts in the file.
    """

    def __init__(self, message: str, *, offset: int = 0, framing_lost: bool = True) -> None:
        super().__init__(message)
        self.offset = offset
        self.framing_lost = framing_lost

    def __reduce__(self) -> tuple[object, ...]:
        return (_corrupt_record, (str(self), self.offset, self.framing_lost))


def _corrupt_record(message: str, offset: int, framing_lost: bool) -> CorruptRecord:
    return CorruptRecord(message, offset=offset, framing_lost=framing_lost)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: crc32c, rotated right by 15 bits, plus a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One record in TFRecord framing (the inverse of `iter_records`; used by tests)."""
    length = struct.pack("<Q", len(data))
    return length + _FOOTER.pack(masked_crc32c(length)) + data + _FOOTER.pack(masked_crc32c(data))


def _remaining(stream: BinaryIO) -> int | None:
    """Bytes left after the stream's position, None when it cannot seek."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return None


def _read(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, read in chunks so that a lying length allocates only what exists."""
    if size <= _READ_CHUNK:
        return stream.read(size)
    parts = []
    while size > 0:
        part = stream.read(min(size, _READ_CHUNK))
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def iter_framed(stream: BinaryIO) -> Iterator[bytes | CorruptRecord]:
    """The records of a TFRecord stream in order, a CorruptRecord for each unreadable one
    (module doc); after one with `framing_lost`, nothing more. Memory: one record."""
    offset = 0
    left = _remaining(stream)
    while True:
        header = stream.read(_HEADER.size)
        if not header:
            return
        if len(header) < _HEADER.size:
            yield CorruptRecord(f"truncated record at {offset}", offset=offset)
            return
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            yield CorruptRecord(f"corrupted record at {offset} (length checksum mismatch)", offset=offset)
            return
        if left is not None and length + _FOOTER.size > left - _HEADER.size:
            yield CorruptRecord(
                f"truncated record at {offset} (its length {length} is more than the "
                f"{max(left - _HEADER.size - _FOOTER.size, 0)} bytes left in the file)",
                offset=offset,
            )
            return
        data = _read(stream, length)
        footer = stream.read(_FOOTER.size)
        if len(data) < length or len(footer) < _FOOTER.size:
            yield CorruptRecord(f"truncated record at {offset}", offset=offset)
            return
        size = _HEADER.size + length + _FOOTER.size
        if masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
            yield CorruptRecord(
                f"corrupted record at {offset} (data checksum mismatch)", offset=offset, framing_lost=False
            )
        else:
            yield data
        offset += size
        if left is not None:
            left -= size


def iter_records(stream: BinaryIO) -> Iterator[bytes]:
    """The records of a TFRecord stream, in order; raises CorruptRecord at the first fault.

    Memory: one record at a time.
    """
    for record in iter_framed(stream):
        if isinstance(record, CorruptRecord):
            raise record
        yield record
