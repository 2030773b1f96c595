"""Hand-built vision-language units, rows and outcomes (spec section 8) for the statistics,
decoding and report tests, built with numpy only so they do not depend on the tokenizer
or the sequencer.

A unit is `[image patches][conditioning text ids][target text ids][E]`: patches and the
conditioning text count local positions 0, 1, ...; target text and E take 511 and the loss.
Rows pack units in order (`timestep` = the unit's index in its row) then pad.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas import output as out
from schemas.vl import KIND_CAPTION
from schemas.vocab import GATO, LOCAL_POSITION_TABLE, PATCH_SIZE, Modality
from transforms.images import patch_positions, patchify
from transforms.sequence import SequenceBatch
from transforms.vl_types import RecordOutcome, TokenizedUnit, VLRecord

TARGET_POSITION = LOCAL_POSITION_TABLE - 1
PATCH_BYTES = PATCH_SIZE * PATCH_SIZE * 3


def scene_image(size: int, *, seed: int) -> np.ndarray:
    """uint8 [size, size, 3], different for each seed and each pixel position."""
    y, x = np.mgrid[0:size, 0:size]
    channels = [(x * 7 + y * 3 + seed * 11) % 256, (x + y * 5 + seed) % 256, np.full_like(x, seed * 40 % 256)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def make_unit(
    key: str,
    *,
    index: int = 0,
    images: Sequence[np.ndarray] = (),
    context: Sequence[int] = (),
    target: Sequence[int] = (),
    end_id: int | None = 2,
    source_key: str | None = None,
) -> TokenizedUnit:
    """`[patches of each image][context ids][target ids][E]` (module doc)."""
    parts = {name: [] for name in ("tokens", "modality", "loss", "positions")}
    pixels, positions, spans = [], [], []
    for image in images:
        grid = image.shape[0] // PATCH_SIZE
        start = sum(len(t) for t in parts["tokens"])
        parts["tokens"].append(np.full(grid * grid, GATO.image_placeholder))
        parts["modality"].append(np.full(grid * grid, Modality.IMAGE))
        parts["loss"].append(np.zeros(grid * grid, bool))
        parts["positions"].append(np.arange(grid * grid))
        pixels.append(patchify(image[None])[0])
        positions.append(patch_positions((grid, grid)))
        spans.append((start, start + grid * grid))
    offset = sum(len(t) for t in parts["positions"])
    target_ids = list(target) + ([] if end_id is None else [end_id])
    for ids, loss in ((list(context), False), (target_ids, True)):
        parts["tokens"].append(np.asarray(ids, dtype=np.int64))
        parts["modality"].append(np.full(len(ids), Modality.TEXT))
        parts["loss"].append(np.full(len(ids), loss))
        parts["positions"].append(np.full(len(ids), TARGET_POSITION) if loss else offset + np.arange(len(ids)))
    text = len(context) + len(target_ids)
    return TokenizedUnit(
        key=key, order_index=index, source_key=source_key or f"{key}#{index}",
        tokens=np.concatenate(parts["tokens"]).astype(np.int32),
        modality=np.concatenate(parts["modality"]).astype(np.int8),
        loss_mask=np.concatenate(parts["loss"]).astype(bool),
        local_positions=np.concatenate(parts["positions"]).astype(np.int16),
        patch_pixels=np.concatenate(pixels) if pixels else np.zeros((0, PATCH_BYTES), np.uint8),
        patch_positions=np.concatenate(positions) if positions else np.zeros((0, 4), np.int16),
        image_spans=np.asarray(spans, dtype=np.int64).reshape(-1, 2),
        text_tokens=text,
    )


def make_outcome(
    key: str, units: Sequence[TokenizedUnit], rejects: Sequence[tuple[str, str | None, str]] = (),
    *, kind: str = KIND_CAPTION,
) -> RecordOutcome:
    record = VLRecord(dataset="d", task="d", kind=kind, key=key, source_file="f.parquet",
                      index_in_file=0, work_item=0, segments=())
    return RecordOutcome(record=record, units=tuple(units), rejects=tuple(rejects))


def make_rows(rows: Sequence[Sequence[TokenizedUnit]], *, length: int, pair_rows: bool = True) -> SequenceBatch:
    """One row per entry of `rows`, its units packed in order then padded to `length`;
    `timestep` is the unit's index in its row (0 for every unit when not `pair_rows`)."""
    columns = {name: np.zeros((len(rows), length), dtype) for name, dtype in (
        ("tokens", np.int32), ("modality", np.int8), ("loss", bool), ("positions", np.int16))}
    columns["tokens"][:] = GATO.pad
    timestep = np.full((len(rows), length), out.NO_TIMESTEP, np.int32)
    num_tokens, pixels, positions, patch_starts = [], [], [], [0]
    for r, units in enumerate(rows):
        at = 0
        for u, unit in enumerate(units):
            span = slice(at, at + unit.num_tokens)
            columns["tokens"][r, span], columns["modality"][r, span] = unit.tokens, unit.modality
            columns["loss"][r, span], columns["positions"][r, span] = unit.loss_mask, unit.local_positions
            timestep[r, span] = u if pair_rows else 0
            pixels.append(unit.patch_pixels)
            positions.append(unit.patch_positions)
            at += unit.num_tokens
        num_tokens.append(at)
        patch_starts.append(patch_starts[-1] + sum(unit.patch_pixels.shape[0] for unit in units))
    flat = np.concatenate(pixels) if pixels else np.zeros((0, PATCH_BYTES), np.uint8)
    return SequenceBatch(
        episode_id=rows[0][0].key if rows else "", tokens=columns["tokens"], modality=columns["modality"],
        loss_mask=columns["loss"], local_positions=columns["positions"], timestep=timestep,
        is_prompt=np.zeros((len(rows), length), bool), num_tokens=np.asarray(num_tokens, np.int32),
        sequence_index=np.arange(len(rows), dtype=np.int32), prompt_episode_id=(None,) * len(rows),
        prompt_kind=(None,) * len(rows), patch_pixels=flat.reshape(-1),
        patch_offsets=np.arange(flat.shape[0] + 1, dtype=np.int64) * PATCH_BYTES,
        patch_positions=np.concatenate(positions) if positions else np.zeros((0, 4), np.int16),
        row_patch_starts=np.asarray(patch_starts, np.int64), prompts_unavailable=0,
        row_episode_ids=tuple(units[0].key for units in rows),
        source_keys=tuple(tuple(unit.source_key for unit in units) for units in rows),
    )


def row_dict(batch: SequenceBatch, row: int, *, dataset: str = "d", task: str = "d") -> dict[str, Any]:
    """Row `row` of `batch` as pyarrow's `to_pylist` gives a row of the sequences table."""
    first, last = batch.row_patch_starts[row], batch.row_patch_starts[row + 1]
    offsets = batch.patch_offsets
    return {
        out.DATASET: dataset, out.TASK: task, out.EPISODE_ID: batch.row_episode_ids[row],
        out.SEQUENCE_INDEX: int(batch.sequence_index[row]), out.NUM_TOKENS: int(batch.num_tokens[row]),
        out.TOKENS: batch.tokens[row].tolist(), out.MODALITY: batch.modality[row].tolist(),
        out.LOSS_MASK: batch.loss_mask[row].tolist(), out.LOCAL_POSITIONS: batch.local_positions[row].tolist(),
        out.TIMESTEP: batch.timestep[row].tolist(), out.IS_PROMPT: batch.is_prompt[row].tolist(),
        out.PROMPT_EPISODE_ID: None,
        out.PATCH_PIXELS: [batch.patch_pixels[offsets[p]:offsets[p + 1]].tobytes() for p in range(first, last)],
        out.PATCH_POSITIONS: batch.patch_positions[first:last].reshape(-1).tolist(),
        out.SOURCE_KEYS: list(batch.source_keys[row]),
    }
