"""Vision-language images -> S x S RGB -> 16x16 patches (spec section 8).

Decode (JPEG, PNG, WebP) with Pillow, apply the EXIF orientation, convert to RGB as
`Image.convert("RGB")` does, resize so the shorter side is S and the longer
round-half-up(long * S / short) with `Image.BILINEAR`, centre-crop S x S at offset
floor((size - S) / 2), then cut into patches in raster order (`transforms/images.py`).

Decoder: baseline and progressive JPEGs in RGB or grayscale without an EXIF rotation are
decoded by simplejpeg (libjpeg-turbo, ~2-3x faster than Pillow here) with `strict=True`,
which gives Pillow's pixels exactly (tests/transforms/test_vl_image.py); anything else, and
any JPEG simplejpeg warns about, goes to Pillow, which decides. So a record is kept or
rejected exactly as with Pillow alone.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np

from schemas.vocab import PATCH_SIZE
from transforms.errors import CORRUPT_IMAGE, TokenizationError, without_addresses
from transforms.images import patch_positions, patchify


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after the resize: shorter side `size`, longer side
    round-half-up(long * size / short), in exact integer arithmetic."""
    short, long = min(width, height), max(width, height)
    scaled = (2 * long * size + short) // (2 * short)
    return (size, scaled) if width <= height else (scaled, size)


_EXIF_ORIENTATION = 0x0112
_FAST_JPEG_MODES = frozenset({"RGB", "L"})  # CMYK and YCCK keep Pillow's own conversion


@functools.cache
def _simplejpeg() -> Any:
    """simplejpeg, or None where it is not installed (then Pillow decodes every image)."""
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


def _fast_jpeg(opened: Any, data: bytes) -> np.ndarray | None:
    """RGB pixels from simplejpeg where they equal Pillow's (module doc), else None."""
    decoder = _simplejpeg()
    if decoder is None or opened.format != "JPEG" or opened.mode not in _FAST_JPEG_MODES:
        return None
    if opened.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        return None
    try:
        return decoder.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError:  # a warning (corrupt data) or an error: Pillow decides
        return None


def decode_rgb(data: bytes, *, size: int) -> np.ndarray:
    """Encoded image bytes -> uint8 [size, size, 3] (module doc); TokenizationError
    (CORRUPT_IMAGE) for bytes Pillow cannot decode in full."""
    from PIL import Image, ImageOps  # Pillow is imported by the workers that decode only

    try:
        with Image.open(io.BytesIO(data)) as opened:
            fast = _fast_jpeg(opened, data)
            image = Image.fromarray(fast) if fast is not None else ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise TokenizationError(
            # Without the stream's address Pillow names, so a reject's text is the same every run.
            CORRUPT_IMAGE, f"image bytes cannot be decoded ({type(exc).__name__}: {without_addresses(str(exc))})",
            value=f"{len(data)} bytes",
        ) from None
    width, height = resized_size(image.width, image.height, size)
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def image_to_patches(data: bytes, *, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Encoded bytes -> (patches uint8 [P, 16*16*3], positions int16 [P, 4]), P = (size/16)^2.

    `size` must be a multiple of 16 (a ValueError otherwise: it is a job option).
    """
    if size < PATCH_SIZE or size % PATCH_SIZE:
        raise ValueError(f"image size {size} is not a positive multiple of {PATCH_SIZE}")
    pixels = decode_rgb(data, size=size)
    grid = size // PATCH_SIZE
    return patchify(pixels[None])[0], patch_positions((grid, grid))
