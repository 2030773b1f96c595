"""Shared builders of the vision-language unit and sequencing tests: a tiny image whose
patches are known, records of each kind, and hand-made units."""

from __future__ import annotations

import io

import numpy as np

from schemas.vl import KIND_CAPTION
from schemas.vocab import GATO, LOCAL_POSITION_TABLE, Modality
from transforms.vl_types import ImageRef, Segment, TokenizedUnit, VLRecord

SIZE = 32  # S of the tests: a 32x32 image is 2x2 = 4 patches
PATCHES = 4
EOS = 2  # the bundled model's end-of-sequence id
PH = GATO.image_placeholder
TARGET = LOCAL_POSITION_TABLE - 1  # 511
IMAGE, TEXT, PAD = int(Modality.IMAGE), int(Modality.TEXT), int(Modality.PAD)
# (row_lo, row_hi, col_lo, col_hi) of the 2x2 grid's patches in raster order.
GRID_2X2 = [[0, 64, 0, 64], [0, 64, 64, 127], [64, 127, 0, 64], [64, 127, 64, 127]]


def image_pixels(seed: int = 0) -> np.ndarray:
    """A 32x32 RGB image with distinct pixels per seed (S = 32: resized and cropped to itself)."""
    return ((np.arange(SIZE * SIZE * 3).reshape(SIZE, SIZE, 3) * 7 + seed * 13) % 256).astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def expected_patches(pixels: np.ndarray) -> np.ndarray:
    """uint8 [4, 768]: the 16x16 blocks of a 32x32 image in raster order, HWC."""
    return np.stack([pixels[r : r + 16, c : c + 16].reshape(-1) for r in (0, 16) for c in (0, 16)])


def record(kind: str, *segments: Segment, key: str = "k", problems: tuple = ()) -> VLRecord:
    return VLRecord(
        dataset="d", task="d", kind=kind, key=key, source_file="f.parquet", index_in_file=3,
        work_item=0, segments=tuple(segments), problems=problems,
    )


def caption_record(*captions: bytes, key: str = "k", image: ImageRef | None = None) -> VLRecord:
    return record(KIND_CAPTION, image or ImageRef(png(image_pixels())), *captions, key=key)


def make_unit(key: str, order_index: int, *, patches: int, text: int) -> TokenizedUnit:
    """A pair `[patches][text ids]` whose ids and pixels say which unit they belong to:
    text ids are 100 * order_index + 0, 1, ...; each patch is filled with order_index."""
    tokens = np.array([PH] * patches + [100 * order_index + j for j in range(text)], dtype=np.int32)
    return TokenizedUnit(
        key=key,
        order_index=order_index,
        source_key=f"{key}#{order_index}",
        tokens=tokens,
        modality=np.array([IMAGE] * patches + [TEXT] * text, dtype=np.int8),
        loss_mask=np.array([False] * patches + [True] * text),
        local_positions=np.array(list(range(patches)) + [TARGET] * text, dtype=np.int16),
        patch_pixels=np.full((patches, 768), order_index % 256, dtype=np.uint8),
        patch_positions=np.full((patches, 4), order_index, dtype=np.int16),
        image_spans=np.array([[0, patches]] if patches else [], dtype=np.int64).reshape(-1, 2),
        text_tokens=text,
    )
