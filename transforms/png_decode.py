"""PNG bytes -> one frame, uint8 `[H, W, C]`: pyspng where it gives Pillow's pixels, else
Pillow, so a frame decodes to Pillow's pixels or fails with Pillow's error; and the
plain-PNG check that vouches for a frame without decoding it (pass 1's verdict).

`transforms/images.py` turns an episode's frames into patches with these.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from transforms.errors import CORRUPT_IMAGE, IMAGE_NOT_UINT8, TokenizationError, without_addresses

# Pillow modes that numpy turns into uint8 HxW(xC) arrays as they are.
_UINT8_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3}


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR colour type -> pyspng output format, for the 8-bit PNGs whose pixels libspng gives
# exactly as Pillow does (same channels; neither applies tRNS or gamma). Palette and
# 1/2/4/16-bit images keep Pillow's own conversions, so they go to Pillow.
_SPNG_FORMATS = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}
_SPNG_CODES = {"L": "G8", "LA": "GA8", "RGB": "RGB8", "RGBA": "RGBA8"}  # pyspng's format constants
_CHUNK_HEAD = struct.Struct(">I4s")  # a PNG chunk: data length, type
_IHDR = struct.Struct(">IIBBBBB")  # width, height, bit depth, colour type, compression, filter, interlace
_PLAIN_IHDR_HEAD = b"\x00\x00\x00\x0dIHDR"  # the first chunk: an IHDR of 13 bytes
_PLAIN_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> channels, as `_SPNG_FORMATS`
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: no data, so always this CRC
_PLAIN_OVERHEAD = 8 + 25 + 12 + 12  # signature, IHDR chunk, one IDAT's length/type/CRC, IEND
_FILTER_TYPES = bytes(range(5))  # a scanline's first byte: None, Sub, Up, Average, Paeth
# libdeflate allocates the whole output first: an IHDR claiming more goes through zlib,
# which allocates as the stream inflates.
_LIBDEFLATE_MAX = 1 << 26


@functools.cache
def spng_decoder() -> Callable[[bytes, str], np.ndarray] | None:
    """pyspng's decode as `(data, format) -> uint8 [H, W, C]` (~5x faster than Pillow on
    Atari frames), or None where pyspng is not installed.

    Its binding's C function is called directly where it exists: `pyspng.load` around it
    builds a dict and drops the channel axis of grey frames on every call (~1.5 us, a
    sixth of an Atari frame's decode), which `decode_png` would then put back.
    """
    try:
        import pyspng
    except ImportError:
        return None
    binding = getattr(pyspng, "_pyspng_c", None)
    decode = getattr(binding, "spng_decode_image_bytes", None)
    codes = {fmt: getattr(binding, f"SPNG_FMT_{code}", None) for fmt, code in _SPNG_CODES.items()}
    if decode is None or None in codes.values():

        def load(data: bytes, fmt: str) -> np.ndarray:
            frame = pyspng.load(data, fmt)
            return frame if frame.ndim == 3 else frame[:, :, None]

        return load
    return lambda data, fmt: decode(data, codes[fmt])


def spng_format(data: bytes) -> str | None:
    """The pyspng format of an 8-bit, non-palette PNG's IHDR; None: let Pillow decode it."""
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or data[24] != 8:
        return None
    return _SPNG_FORMATS.get(data[25])


def _checked_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview, int]]:
    """(type, payload, end offset) of each chunk after the signature, while the chunk fits
    and has its CRC; stops at the first that does not, and after IEND."""
    view = memoryview(data)
    pos, size = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= size:
        length, kind = _CHUNK_HEAD.unpack_from(data, pos)
        end = pos + 12 + length
        if end > size or zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            return
        yield kind, view[pos + 8 : end - 4], end
        if kind == b"IEND":
            return
        pos = end


def _intact(data: bytes) -> bool:
    """Every chunk up to IEND has its CRC, and the IDAT zlib stream is whole with its adler32.

    pyspng ignores both (its binding sets SPNG_CRC_USE), where Pillow refuses a bad CRC
    before IDAT and a bad data stream: a PNG failing here goes to Pillow, which decides.
    """
    idat = []
    for kind, payload, _ in _checked_chunks(data):
        if kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            stream = zlib.decompressobj()
            stream.decompress(b"".join(idat))
            return stream.eof and not stream.unused_data
    return False


def _plain_idat(data: bytes) -> memoryview | bytes | None:
    """The zlib stream of a PNG whose chunks after its IHDR are IDATs and an IEND ending
    the bytes, all with their CRCs; None for any other."""
    size = len(data)
    if size == _PLAIN_OVERHEAD + int.from_bytes(data[33:37], "big") and data[37:41] == b"IDAT" and data.endswith(_IEND):
        # The common layout, one IDAT, checked without walking: IEND's CRC is a constant.
        view = memoryview(data)
        if zlib.crc32(view[12:29]) != int.from_bytes(view[29:33], "big"):
            return None
        if zlib.crc32(view[37 : size - 16]) != int.from_bytes(view[size - 16 : size - 12], "big"):
            return None
        return view[41 : size - 16]
    idat, ended = [], False
    for kind, payload, end in _checked_chunks(data):
        if kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            ended = not payload and end == size
        elif kind != b"IHDR" or end != 33:  # any other chunk: let the decoders decide
            return None
    return b"".join(idat) if ended and idat else None


def plain_png_shape(data: bytes) -> tuple[int, int, int] | None:
    """`(H, W, C)` of a PNG that is sure to decode, to Pillow's pixels, checked without decoding it.

    None: not known without decoding (`decode_png` decides). A plain PNG is the signature,
    an IHDR (8-bit grey, RGB, grey-alpha or RGBA, deflate, no interlace), one or more IDAT
    and an IEND that ends the bytes, nothing else; every chunk has its CRC; the IDAT stream
    inflates whole, adler32 included, to exactly H scanlines of `1 + W*C` bytes, each
    starting with a filter type 0-4 (`_inflated`). Such a PNG is what `_intact` passes and
    pyspng decodes (tests: every truncation and flipped byte), at the cost of the inflate.
    """
    size = len(data)
    if size < 57 or data[:8] != _PNG_SIGNATURE or data[8:16] != _PLAIN_IHDR_HEAD:
        return None
    width, height, depth, colour, compression, method, interlace = _IHDR.unpack_from(data, 16)
    channels = _PLAIN_CHANNELS.get(colour)
    if depth != 8 or channels is None or compression or method or interlace or not width or not height:
        return None
    idat = _plain_idat(data)
    if idat is None:
        return None
    stride = 1 + width * channels
    raw = _inflated(idat, height * stride)
    if raw is None or raw[::stride].translate(None, _FILTER_TYPES):
        return None
    return (height, width, channels)


@functools.cache
def _libdeflate() -> Any:
    """The `deflate` package (libdeflate: inflates Atari frames ~1.4x faster than zlib),
    or None where it is not installed."""
    try:
        import deflate
    except ImportError:
        return None
    return deflate


def _inflated(stream: bytes | memoryview, size: int) -> bytes | bytearray | None:
    """`stream` inflated when it is one whole zlib stream, adler32 included, of exactly
    `size` bytes; else None. Bytes after the stream's end are ignored, as Pillow and pyspng
    ignore them (tests)."""
    libdeflate = _libdeflate()
    if libdeflate is not None and size <= _LIBDEFLATE_MAX:
        try:
            raw = libdeflate.zlib_decompress(stream, size)  # at most `size` bytes
        except libdeflate.DeflateError:
            return None
        return raw if len(raw) == size else None
    inflate = zlib.decompressobj()
    try:
        # At most one byte more than the image: a stream that inflates to more is refused
        # without inflating it all.
        raw = inflate.decompress(stream, size + 1)
    except zlib.error:
        return None
    return raw if len(raw) == size and inflate.eof else None


def decode_png(data: bytes, index: int, *, verified: bool = False) -> np.ndarray:
    """One frame as uint8 `[H, W, C]`: pyspng where it gives Pillow's pixels, else Pillow.

    pyspng is tried only on an 8-bit, non-palette, intact PNG; anything it refuses goes to
    Pillow too, so a frame decodes to Pillow's pixels or fails with Pillow's error.
    `verified`: these exact bytes already decoded (or passed `plain_png_shape`), as in
    the job's pass 2 after pass 1's verdict; pyspng is then tried without `_intact`, and a
    verified frame gives the same pixels either way (tests).
    """
    spng = spng_decoder()
    fmt = spng_format(data) if spng is not None else None
    if fmt is not None and (verified or _intact(data)):
        try:
            return spng(data, fmt)
        except Exception:  # noqa: BLE001 (Pillow decides, and names the error, below)
            pass
    return decode_png_pillow(data, index)


def decode_png_pillow(data: bytes, index: int) -> np.ndarray:
    from PIL import Image  # Pillow only where PNG bytes actually occur

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode == "1":
                img = img.convert("L")
            elif img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            if img.mode not in _UINT8_MODES:
                raise TokenizationError(
                    IMAGE_NOT_UINT8,
                    f"image at index {index} has Pillow mode {img.mode!r}, not 8-bit",
                    timestep=index,
                    value=img.mode,
                )
            frame = np.asarray(img, dtype=np.uint8)
    except TokenizationError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        # Pillow's message may name the stream object (`<_io.BytesIO object at 0x...>`):
        # drop the address, so a reject's text is the same on every run.
        reason = without_addresses(str(exc))
        raise TokenizationError(
            CORRUPT_IMAGE,
            f"image at index {index} cannot be decoded: {type(exc).__name__}: {reason}",
            timestep=index,
        ) from None
    return frame if frame.ndim == 3 else frame[:, :, None]
