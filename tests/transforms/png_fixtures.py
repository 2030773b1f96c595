"""PNG bytes for the image and PNG tests: encoded frames, every kind of PNG, damaged copies,
and PNGs put together chunk by chunk."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from transforms import png_decode


def png(frame: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def variants() -> list[bytes]:
    """PNGs of every colour type and bit depth, interlaced, with tRNS, palettes."""
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (19, 23), dtype=np.uint8)
    rgb = rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (19, 23, 4), dtype=np.uint8)
    la = rng.integers(0, 256, (19, 23, 2), dtype=np.uint8)
    out = [png(gray), png(rgb), png(rgba), png(la, mode="LA")]
    for img, options in [
        (Image.fromarray(gray), {"interlace": 1}),
        (Image.fromarray(rgb), {"interlace": 1}),
        (Image.fromarray(gray), {"transparency": 7}),
        (Image.fromarray(rgb), {"transparency": (1, 2, 3)}),
        (Image.fromarray(rgb).convert("P"), {}),
        (Image.fromarray(rgb).convert("P"), {"transparency": 0}),
        (Image.fromarray(gray > 128), {}),
        (Image.fromarray(gray).convert("P", colors=4), {"bits": 2}),
    ]:
        buf = io.BytesIO()
        img.save(buf, format="PNG", **options)
        out.append(buf.getvalue())
    return out


def damaged(good: bytes) -> list[bytes]:
    """Every truncation and flipped byte of `good`, and trailing or repeated bytes."""
    out = [good[:n] for n in range(len(good))]
    out += [good[:i] + bytes([good[i] ^ mask]) + good[i + 1 :] for i in range(len(good)) for mask in (1, 0x5A, 0xFF)]
    return out + [good + b"trailing", good[:-12] + good[-24:]]


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(
    scanlines: bytes, *, height: int, width: int, colour: int, splits: int = 1, interlace: int = 0
) -> bytes:
    """A PNG of the given filtered scanlines (each: filter type, then its bytes), its
    zlib stream cut into `splits` IDAT chunks."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, interlace)
    stream = zlib.compress(scanlines)
    cut = -(-len(stream) // splits)
    idats = b"".join(chunk(b"IDAT", stream[i : i + cut]) for i in range(0, len(stream), cut))
    return png_decode._PNG_SIGNATURE + chunk(b"IHDR", ihdr) + idats + chunk(b"IEND", b"")
