"""Images -> 16x16 patches (spec section 2), vectorized over a whole episode.

Frames are uint8 `[T, H, W, C]` (any C >= 1). They are zero-padded bottom/right to
multiples of 16 (or resized to a declared size), then cut into patches in raster order:
patch k of an R x Cg grid is (row k // Cg, column k % Cg), and its pixels are a 16x16xC
block in HWC order. Pixels stay raw uint8; the model-side normalization is
`schemas.vocab.IMAGE_NORMALIZATION`.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import Any

import numpy as np

from schemas.vocab import PATCH_POSITION_BINS, PATCH_SIZE
from transforms.errors import (
    BAD_SHAPE,
    CORRUPT_IMAGE,
    IMAGE_NOT_UINT8,
    TokenizationError,
    without_addresses,
)

_WORD = np.dtype(np.uint64).itemsize
# Pillow modes that numpy turns into uint8 HxW(xC) arrays as they are.
_UINT8_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3}


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR colour type -> pyspng output format, for the 8-bit PNGs whose pixels libspng gives
# exactly as Pillow does (same channels; neither applies tRNS or gamma). Palette and
# 1/2/4/16-bit images keep Pillow's own conversions, so they go to Pillow.
_SPNG_FORMATS = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}
_CHUNK_HEAD = struct.Struct(">I4s")  # a PNG chunk: data length, type


@functools.cache
def _spng() -> Any:
    """pyspng (~5x faster than Pillow on Atari frames) or None where it is not installed."""
    try:
        import pyspng
    except ImportError:
        return None
    return pyspng


def _spng_format(data: bytes) -> str | None:
    """The pyspng format of an 8-bit, non-palette PNG's IHDR; None: let Pillow decode it."""
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or data[24] != 8:
        return None
    return _SPNG_FORMATS.get(data[25])


def _intact(data: bytes) -> bool:
    """Every chunk up to IEND has its CRC, and the IDAT zlib stream is whole with its adler32.

    pyspng ignores both (its binding sets SPNG_CRC_USE), where Pillow refuses a bad CRC
    before IDAT and a bad data stream: a PNG failing here goes to Pillow, which decides.
    """
    view = memoryview(data)
    pos, size, idat = len(_PNG_SIGNATURE), len(data), []
    while pos + 12 <= size:
        length, kind = _CHUNK_HEAD.unpack_from(data, pos)
        end = pos + 12 + length
        if end > size or zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            return False
        if kind == b"IDAT":
            idat.append(view[pos + 8 : end - 4])
        elif kind == b"IEND":
            stream = zlib.decompressobj()
            stream.decompress(b"".join(idat))
            return stream.eof and not stream.unused_data
        pos = end
    return False


def _decode_png(data: bytes, index: int) -> np.ndarray:
    """One frame as uint8 `[H, W, C]`: pyspng where it gives Pillow's pixels, else Pillow.

    pyspng is tried only on an 8-bit, non-palette, intact PNG; anything it refuses goes to
    Pillow too, so a frame decodes to Pillow's pixels or fails with Pillow's error.
    """
    spng = _spng()
    fmt = _spng_format(data) if spng is not None else None
    if fmt is not None and _intact(data):
        try:
            frame = spng.load(data, fmt)
        except Exception:  # noqa: BLE001 (Pillow decides, and names the error, below)
            pass
        else:
            return frame if frame.ndim == 3 else frame[:, :, None]
    return _decode_png_pillow(data, index)


def _decode_png_pillow(data: bytes, index: int) -> np.ndarray:
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


def decode_pngs(encoded: np.ndarray) -> np.ndarray:
    """A 1-D array of PNG (or any Pillow-readable) bytes -> uint8 `[T, H, W, C]`.

    Every frame must have the same shape (else `bad_shape` naming the first that differs).
    """
    if len(encoded) == 0:
        return np.zeros((0, 0, 0, 1), dtype=np.uint8)
    first = _decode_png(bytes(encoded[0]), 0)
    out = np.empty((len(encoded),) + first.shape, dtype=np.uint8)
    out[0] = first
    for t in range(1, len(encoded)):  # per frame: decoding is Pillow's C loop anyway
        frame = _decode_png(bytes(encoded[t]), t)
        if frame.shape != first.shape:
            raise TokenizationError(
                BAD_SHAPE,
                f"image at index {t} has shape {frame.shape}, the first has {first.shape}",
                timestep=t,
                value=frame.shape,
            )
        out[t] = frame
    return out


def as_frames(leaf: np.ndarray) -> np.ndarray:
    """An image leaf as uint8 `[T, H, W, C]`: `[T, H, W, C]`, `[T, H, W]`, or 1-D PNG bytes."""
    x = np.asarray(leaf)
    if x.dtype.kind in "OSV" and x.ndim == 1:
        return decode_pngs(x)
    if x.dtype != np.uint8:
        raise TokenizationError(
            IMAGE_NOT_UINT8,
            f"image must be uint8 (or PNG bytes), got dtype {x.dtype}",
            value=str(x.dtype),
        )
    if x.ndim == 3:
        return x[..., None]
    if x.ndim != 4:
        raise TokenizationError(
            BAD_SHAPE,
            f"image must be [T, H, W, C] or [T, H, W], got shape {x.shape}",
            value=x.shape,
        )
    if x.shape[3] < 1:
        raise TokenizationError(BAD_SHAPE, f"image has no channels: shape {x.shape}", value=x.shape)
    return x


def padded_size(
    height_width: tuple[int, int], *, size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """(H', W') after padding to multiples of 16, or `size` when resizing is declared."""
    if size is not None:
        return (int(size[0]), int(size[1]))
    height, width = (int(d) for d in height_width)
    return (-(-height // PATCH_SIZE) * PATCH_SIZE, -(-width // PATCH_SIZE) * PATCH_SIZE)


def pad_frames(frames: np.ndarray) -> np.ndarray:
    """Zero-pad `[T, H, W, C]` bottom/right to multiples of 16 (no copy when already so)."""
    t, h, w, c = frames.shape
    ph, pw = padded_size((h, w))
    if (ph, pw) == (h, w):
        return frames
    out = np.zeros((t, ph, pw, c), dtype=frames.dtype)
    out[:, :h, :w, :] = frames
    return out


def resize_frames(frames: np.ndarray, *, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of `[T, H, W, C]` to `size` = (H', W'), channel by channel.

    Per-channel "L" images so any channel count works; H', W' must be multiples of 16.
    """
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0 or height % PATCH_SIZE or width % PATCH_SIZE:
        raise ValueError(
            f"image_size {size!r} must be positive multiples of {PATCH_SIZE}"
        )
    t, h, w, c = frames.shape
    if (h, w) == (height, width):
        return frames
    out = np.empty((t, height, width, c), dtype=np.uint8)
    for i in range(t):  # Pillow resizes one 2-D plane per call
        for ch in range(c):
            plane = Image.fromarray(np.ascontiguousarray(frames[i, :, :, ch]), mode="L")
            out[i, :, :, ch] = np.asarray(
                plane.resize((width, height), Image.Resampling.BILINEAR)
            )
    return out


def patchify(frames: np.ndarray) -> np.ndarray:
    """`[T, H, W, C]` with H, W multiples of 16 -> `[T, R*Cg, 16*16*C]`, raster order, HWC."""
    t, h, w, c = frames.shape
    if h % PATCH_SIZE or w % PATCH_SIZE:
        raise ValueError(f"frames {frames.shape} are not padded to multiples of {PATCH_SIZE}")
    rows, cols = h // PATCH_SIZE, w // PATCH_SIZE
    # A patch row is 16*C contiguous bytes, a multiple of 8: move it as 2*C uint64 words.
    # The transpose then copies 8-byte elements instead of single bytes (~4x faster).
    words = np.ascontiguousarray(frames).reshape(t, h, w * c).view(np.uint64)
    per_row = PATCH_SIZE * c // _WORD
    blocks = words.reshape(t, rows, PATCH_SIZE, cols, per_row).transpose(0, 1, 3, 2, 4)
    patches = np.ascontiguousarray(blocks).reshape(t, rows * cols, PATCH_SIZE * per_row)
    return patches.view(np.uint8)


def unpatchify(patches: np.ndarray, *, rows: int, cols: int, channels: int) -> np.ndarray:
    """Inverse of `patchify`: `[T, rows*cols, 256*C]` -> `[T, 16*rows, 16*cols, C]`."""
    t = patches.shape[0]
    blocks = np.asarray(patches).reshape(t, rows, cols, PATCH_SIZE, PATCH_SIZE, channels)
    return blocks.transpose(0, 1, 3, 2, 4, 5).reshape(
        t, rows * PATCH_SIZE, cols * PATCH_SIZE, channels
    )


def interval_bins(count: int) -> tuple[np.ndarray, np.ndarray]:
    """For i in [0, count): floor(i/count * 128) and floor((i+1)/count * 128), clamped to [0, 127].

    Integer arithmetic, so the floor is exact (no float rounding at bin edges).
    """
    i = np.arange(count, dtype=np.int64)
    lo = np.minimum(i * PATCH_POSITION_BINS // count, PATCH_POSITION_BINS - 1)
    hi = np.minimum((i + 1) * PATCH_POSITION_BINS // count, PATCH_POSITION_BINS - 1)
    return lo, hi


def patch_positions(grid: tuple[int, int]) -> np.ndarray:
    """int16 `[rows*cols, 4]`: (row_lo, row_hi, col_lo, col_hi) of each patch, raster order."""
    rows, cols = grid
    row_lo, row_hi = interval_bins(rows)
    col_lo, col_hi = interval_bins(cols)
    out = np.empty((rows, cols, 4), dtype=np.int16)
    out[..., 0] = row_lo[:, None]
    out[..., 1] = row_hi[:, None]
    out[..., 2] = col_lo[None, :]
    out[..., 3] = col_hi[None, :]
    return out.reshape(rows * cols, 4)


def image_patches(
    leaf: np.ndarray, *, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, int, int]:
    """An image leaf -> (patches `[T, P, 256*C]`, rows, cols): decode, pad or resize, patchify."""
    frames = as_frames(leaf)
    frames = pad_frames(frames) if size is None else resize_frames(frames, size=size)
    return (
        patchify(frames),
        frames.shape[1] // PATCH_SIZE,
        frames.shape[2] // PATCH_SIZE,
    )
