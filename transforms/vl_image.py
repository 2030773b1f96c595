"""Vision-language images -> S x S RGB -> 16x16 patches (spec section 8).

Decode (JPEG, PNG, WebP) with Pillow, apply the EXIF orientation, convert to RGB as
`Image.convert("RGB")` does, resize so the shorter side is S and the longer
round-half-up(long * S / short) with `Image.BILINEAR`, centre-crop S x S at offset
floor((size - S) / 2), then cut into patches in raster order (`transforms/images.py`).
"""

from __future__ import annotations

import io

import numpy as np

from schemas.vocab import PATCH_SIZE
from transforms.errors import CORRUPT_IMAGE, TokenizationError
from transforms.images import patch_positions, patchify


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after the resize: shorter side `size`, longer side
    round-half-up(long * size / short), in exact integer arithmetic."""
    short, long = min(width, height), max(width, height)
    scaled = (2 * long * size + short) // (2 * short)
    return (size, scaled) if width <= height else (scaled, size)


def decode_rgb(data: bytes, *, size: int) -> np.ndarray:
    """Encoded image bytes -> uint8 [size, size, 3] (module doc); TokenizationError
    (CORRUPT_IMAGE) for bytes Pillow cannot decode in full."""
    from PIL import Image, ImageOps  # Pillow is imported by the workers that decode only

    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise TokenizationError(
            CORRUPT_IMAGE, f"image bytes cannot be decoded ({type(exc).__name__}: {exc})",
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
