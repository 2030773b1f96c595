"""Decode a row group into numpy arrays, and assemble batches from rows of several.

A batch is a dict of numpy arrays with a leading batch axis B:
- `tokens` int32, `modality` int8, `loss_mask` bool, `local_positions` int16,
  `timestep` int32, `is_prompt` bool: [B, L], as stored;
- `patch_pixels` [B, P, 16, 16, C]: the row's image patches in token order, uint8 as
  stored, or float32 ((p / 255) * 2 - 1) / 4 when normalized; P is the batch's largest
  patch count (or the fixed `max_patches`), padding is 0;
- `patch_positions` int16 [B, P, 4] (row_lo, row_hi, col_lo, col_hi), `patch_mask` bool [B, P];
- `source` int32 [B] (index into the reader's sources), `global_index` int64 [B],
  `episode_id` object [B] (str), `sequence_index` int32 [B].
Invariant: patch i of row b belongs to the i-th image token of `tokens[b]`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from schemas import output as out
from schemas.vocab import PATCH_SIZE

PATCH_MASK = "patch_mask"
SOURCE = "source"
GLOBAL_INDEX = "global_index"

# Columns of [B, L] arrays, with their numpy dtype.
TOKEN_COLUMNS: dict[str, np.dtype] = {
    out.TOKENS: np.dtype(np.int32),
    out.MODALITY: np.dtype(np.int8),
    out.LOSS_MASK: np.dtype(bool),
    out.LOCAL_POSITIONS: np.dtype(np.int16),
    out.TIMESTEP: np.dtype(np.int32),
    out.IS_PROMPT: np.dtype(bool),
}
READ_COLUMNS = [out.EPISODE_ID, out.SEQUENCE_INDEX, *TOKEN_COLUMNS, out.PATCH_PIXELS, out.PATCH_POSITIONS]
_PIXELS_PER_CHANNEL = PATCH_SIZE * PATCH_SIZE
# Model-side value of every uint8 pixel: ((p / 255) * 2 - 1) / 4 (schemas.vocab.IMAGE_NORMALIZATION).
_NORMALIZED = (((np.arange(256, dtype=np.float64) / 255.0) * 2.0 - 1.0) / 4.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One decoded row group. Invariant: patches of row i are patches[patch_offsets[i]:patch_offsets[i+1]]."""

    rows: int
    columns: dict[str, np.ndarray]  # TOKEN_COLUMNS name -> [rows, L]
    episode_id: np.ndarray  # object [rows]
    sequence_index: np.ndarray  # int32 [rows]
    patch_offsets: np.ndarray  # int64 [rows + 1]
    patches: np.ndarray  # uint8 [P, 16, 16, C]
    patch_positions: np.ndarray  # int16 [P, 4]


def _fixed_list(table: pa.Table, name: str, length: int, dtype: np.dtype, where: str) -> np.ndarray:
    array = table.column(name).combine_chunks()
    offsets = np.asarray(array.offsets)
    lengths = np.diff(offsets)
    if (lengths != length).any():
        bad = int(np.flatnonzero(lengths != length)[0])
        raise ValueError(
            f"{where}: row {bad} of column {name!r} has {int(lengths[bad])} values; "
            f"the manifest's sequence_length is {length}"
        )
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.astype(dtype, copy=False).reshape(len(array), length)


def decode_unit(table: pa.Table, *, sequence_length: int, channels: int, where: str) -> Unit:
    """Numpy arrays of one row group read with READ_COLUMNS.

    Patches with one channel are repeated to `channels` (grayscale beside RGB in one
    batch); any other channel count that differs from `channels` is an error.
    """
    rows = table.num_rows
    columns = {}
    for name, dtype in TOKEN_COLUMNS.items():
        columns[name] = _fixed_list(table, name, sequence_length, dtype, where)
    pixels = table.column(out.PATCH_PIXELS).combine_chunks()
    patch_offsets = np.asarray(pixels.offsets, dtype=np.int64)
    patch_offsets = patch_offsets - patch_offsets[0]
    flat = pixels.flatten()
    num_patches = len(flat)
    if num_patches:
        byte_offsets = np.frombuffer(flat.buffers()[1], dtype=np.int32)[flat.offset : flat.offset + num_patches + 1]
        sizes = np.diff(byte_offsets)
        size = int(sizes[0])
        if (sizes != size).any() or size % _PIXELS_PER_CHANNEL:
            raise ValueError(
                f"{where}: image patches of {sorted(set(sizes.tolist()))[:5]} bytes; every patch "
                f"must be {PATCH_SIZE}x{PATCH_SIZE}xC uint8"
            )
        data = np.frombuffer(flat.buffers()[2], dtype=np.uint8)[byte_offsets[0] : byte_offsets[-1]]
        stored = size // _PIXELS_PER_CHANNEL
        patches = data.reshape(num_patches, PATCH_SIZE, PATCH_SIZE, stored)
        if stored != channels:
            if stored != 1:
                raise ValueError(
                    f"{where}: image patches have {stored} channels, the reader was asked for "
                    f"{channels}; set image_channels={stored}"
                )
            patches = np.repeat(patches, channels, axis=-1)
    else:
        patches = np.zeros((0, PATCH_SIZE, PATCH_SIZE, channels), dtype=np.uint8)
    positions = table.column(out.PATCH_POSITIONS).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    if positions.shape[0] != num_patches * out.PATCH_POSITION_WIDTH:
        raise ValueError(
            f"{where}: {positions.shape[0]} patch position values for {num_patches} patches; "
            f"expected {out.PATCH_POSITION_WIDTH} per patch"
        )
    return Unit(
        rows=rows,
        columns=columns,
        episode_id=np.asarray(table.column(out.EPISODE_ID).to_pylist(), dtype=object),
        sequence_index=table.column(out.SEQUENCE_INDEX).to_numpy().astype(np.int32, copy=False),
        patch_offsets=patch_offsets,
        patches=patches,
        patch_positions=positions.astype(np.int16, copy=False).reshape(num_patches, out.PATCH_POSITION_WIDTH),
    )


def assemble(
    parts: list[tuple[Unit, np.ndarray, np.ndarray]],
    *,
    batch_size: int,
    sequence_length: int,
    channels: int,
    max_patches: int | None,
    normalize: bool,
) -> dict[str, np.ndarray]:
    """A batch from (unit, rows in unit, batch slots) parts that cover every slot once."""
    batch: dict[str, np.ndarray] = {
        name: np.empty((batch_size, sequence_length), dtype=dtype) for name, dtype in TOKEN_COLUMNS.items()
    }
    episode_id = np.empty(batch_size, dtype=object)
    sequence_index = np.empty(batch_size, dtype=np.int32)
    counts = np.empty(batch_size, dtype=np.int64)
    for unit, rows, slots in parts:
        for name in TOKEN_COLUMNS:
            batch[name][slots] = unit.columns[name][rows]
        episode_id[slots] = unit.episode_id[rows]
        sequence_index[slots] = unit.sequence_index[rows]
        counts[slots] = unit.patch_offsets[rows + 1] - unit.patch_offsets[rows]
    width = int(counts.max(initial=0))
    if max_patches is not None:
        if width > max_patches:
            raise ValueError(
                f"a sequence holds {width} image patches, more than max_patches={max_patches}; "
                "raise max_patches (or leave it None to pad to each batch's largest)"
            )
        width = max_patches
    pixels = np.zeros((batch_size, width, PATCH_SIZE, PATCH_SIZE, channels), dtype=np.uint8)
    positions = np.zeros((batch_size, width, out.PATCH_POSITION_WIDTH), dtype=np.int16)
    mask = np.arange(width)[None, :] < counts[:, None]
    for unit, rows, slots in parts:
        n = unit.patch_offsets[rows + 1] - unit.patch_offsets[rows]
        if not n.sum():
            continue
        # Flat source patch index and (slot, column) destination of every patch of these rows.
        dest_slot = np.repeat(slots, n)
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        src = np.repeat(unit.patch_offsets[rows], n) + within
        pixels[dest_slot, within] = unit.patches[src]
        positions[dest_slot, within] = unit.patch_positions[src]
    if normalize:
        normalized = _NORMALIZED[pixels]
        normalized[~mask] = 0.0  # padding stays 0, not the value of pixel 0
        batch[out.PATCH_PIXELS] = normalized
    else:
        batch[out.PATCH_PIXELS] = pixels
    batch[out.PATCH_POSITIONS] = positions
    batch[PATCH_MASK] = mask
    batch[out.EPISODE_ID] = episode_id
    batch[out.SEQUENCE_INDEX] = sequence_index
    return batch
