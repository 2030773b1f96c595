"""Tokenized vision-language units -> rows of L tokens (spec section 8). Pure numpy.

Pairs (captions, VQA) of one input file are put in a stable hash order and packed greedily,
at most `MAX_PAIRS_PER_ROW` to a row, never split; a document is cut into consecutive rows
of L tokens at any token boundary but never inside an image. No prompts.

Invariants of the rows of a `SequenceBatch` made here (S rows of L tokens):
- a row is `[unit tokens, padding]`; unit tokens keep their id, modality, loss mask and
  local position; padding is the pad id, modality PAD, loss 0, local position 0,
  timestep -1; `is_prompt` is False everywhere, and no row has a prompt;
- `timestep` is the unit's index within its row (pairs), 0 on a document's tokens;
- `row_episode_ids[s]` is row s's first unit's record key, `source_keys[s]` its units'
  source keys in token order; the patches of a row are its image tokens' patches, in
  token order, and the batch's patches are the rows' in row order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from schemas.output import NO_TIMESTEP
from schemas.vl import MAX_PAIRS_PER_ROW
from schemas.vocab import PATCH_SIZE, Modality, VocabLayout
from transforms.hashing import HashPrefix
from transforms.sequence import SequenceBatch
from transforms.vl_types import TokenizedUnit


@dataclasses.dataclass(frozen=True)
class _Runs:
    """Where the units' concatenated tokens go: run k is the next `sizes[k]` tokens, put in
    row `rows[k]` from column `columns[k]` with timestep `timesteps[k]`. Runs cover every
    token, in order, and rows are non-decreasing (so patches stay in row order)."""

    sizes: np.ndarray
    rows: np.ndarray
    columns: np.ndarray
    timesteps: np.ndarray

    @classmethod
    def of(cls, runs: Sequence[tuple[int, int, int, int]]) -> _Runs:
        table = np.asarray(runs, dtype=np.int64).reshape(-1, 4)
        return cls(*(table[:, j] for j in range(4)))


def _joined(units: Sequence[TokenizedUnit], name: str, *, width: int | None = None) -> np.ndarray:
    """The units' `name` arrays one after the other (empty: zero rows of `width` columns)."""
    arrays = [getattr(u, name) for u in units]
    if not arrays:
        return np.zeros(0 if width is None else (0, width), dtype=np.int64)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _rows_batch(
    units: Sequence[TokenizedUnit],
    runs: _Runs,
    *,
    num_rows: int,
    length: int,
    layout: VocabLayout,
    row_keys: Sequence[str],
    source_keys: Sequence[tuple[str, ...]],
) -> SequenceBatch:
    """Scatter the units' tokens into padded [S, L] columns (module invariants)."""
    starts = np.cumsum(runs.sizes) - runs.sizes
    # Flat destination of token i of run k: row * L + column + (i - start of run k).
    dest = np.repeat(runs.rows * length + runs.columns - starts, runs.sizes) + np.arange(int(runs.sizes.sum()))

    def column(values: np.ndarray, pad: int | bool, dtype: type) -> np.ndarray:
        out = np.full(num_rows * length, pad, dtype=dtype)
        out[dest] = values
        return out.reshape(num_rows, length)

    modality = _joined(units, "modality")
    patches_before = np.concatenate([[0], np.cumsum(modality == int(Modality.IMAGE))])
    row_patches = np.zeros(num_rows + 1, dtype=np.int64)
    run_patches = patches_before[starts + runs.sizes] - patches_before[starts]
    row_patches[1:] = np.cumsum(np.bincount(runs.rows, weights=run_patches, minlength=num_rows))
    pixels = _joined(units, "patch_pixels", width=PATCH_SIZE * PATCH_SIZE * 3).astype(np.uint8, copy=False)
    return SequenceBatch(
        episode_id=row_keys[0] if row_keys else "",
        tokens=column(_joined(units, "tokens"), layout.pad, np.int32),
        modality=column(modality, int(Modality.PAD), np.int8),
        loss_mask=column(_joined(units, "loss_mask"), False, bool),
        local_positions=column(_joined(units, "local_positions"), 0, np.int16),
        timestep=column(np.repeat(runs.timesteps, runs.sizes), NO_TIMESTEP, np.int32),
        is_prompt=np.zeros((num_rows, length), dtype=bool),
        num_tokens=np.bincount(runs.rows, weights=runs.sizes, minlength=num_rows).astype(np.int32),
        sequence_index=np.arange(num_rows, dtype=np.int32),
        prompt_episode_id=(None,) * num_rows,
        prompt_kind=(None,) * num_rows,
        patch_pixels=pixels.reshape(-1),
        patch_offsets=np.arange(pixels.shape[0] + 1, dtype=np.int64) * pixels.shape[1],
        patch_positions=_joined(units, "patch_positions", width=4).astype(np.int16, copy=False).reshape(-1, 4),
        row_patch_starts=row_patches,
        prompts_unavailable=0,
        row_episode_ids=tuple(row_keys),
        source_keys=tuple(source_keys),
    )


def pair_order(units: Sequence[TokenizedUnit], *, seed: int, dataset: str) -> list[int]:
    """Indices of `units` in packing order: by stable_hash(seed, dataset, key, order_index),
    ties by key, then order_index, then position, so the order of units that differ in
    (key, order_index) does not depend on the order they arrive in."""
    prefix = HashPrefix(seed, dataset)
    ranked = sorted((prefix.hash(u.key, u.order_index), u.key, u.order_index, i) for i, u in enumerate(units))
    return [i for *_, i in ranked]


def pack_pairs(
    units: Sequence[TokenizedUnit],
    *,
    seed: int,
    dataset: str,
    sequence_length: int,
    layout: VocabLayout,
    max_per_row: int = MAX_PAIRS_PER_ROW,
) -> SequenceBatch:
    """Pairs in `pair_order`, packed greedily: the next pair joins the current row if it fits
    and the row has fewer than `max_per_row` pairs, else it starts a new row (module
    invariants). A pair longer than `sequence_length` (tokenization rejects those) is a
    ValueError naming it."""
    if max_per_row < 1:
        raise ValueError(f"max pairs per row must be >= 1, got {max_per_row}")
    ordered = [units[i] for i in pair_order(units, seed=seed, dataset=dataset)]
    runs: list[tuple[int, int, int, int]] = []
    row_keys: list[str] = []
    source_keys: list[list[str]] = []
    used = 0
    for unit in ordered:
        size = unit.num_tokens
        if size > sequence_length:
            raise ValueError(
                f"pair {unit.source_key!r} of dataset {dataset!r}: {size} tokens > sequence length {sequence_length}"
            )
        if not source_keys or len(source_keys[-1]) >= max_per_row or used + size > sequence_length:
            row_keys.append(unit.key)
            source_keys.append([])
            used = 0
        runs.append((size, len(row_keys) - 1, used, len(source_keys[-1])))
        source_keys[-1].append(unit.source_key)
        used += size
    return _rows_batch(
        ordered, _Runs.of(runs), num_rows=len(row_keys), length=sequence_length, layout=layout,
        row_keys=row_keys, source_keys=[tuple(keys) for keys in source_keys],
    )


def document_cuts(unit: TokenizedUnit, *, sequence_length: int) -> list[int]:
    """Row boundaries [0, c_1, ..., N] of a document: each row takes up to L tokens but ends
    early before an image that does not fit. An image longer than L is a ValueError."""
    image_starts, image_stops = unit.image_spans[:, 0], unit.image_spans[:, 1]
    total = unit.num_tokens
    cuts = [0]
    while cuts[-1] < total:
        start = cuts[-1]
        end = min(start + sequence_length, total)
        inside = int(np.searchsorted(image_starts, end, side="left")) - 1  # last image starting before end
        if inside >= 0 and image_stops[inside] > end:
            end = int(image_starts[inside])
        if end <= start:
            raise ValueError(
                f"document {unit.source_key!r}: image at tokens [{image_starts[inside]}, {image_stops[inside]}) "
                f"is longer than the sequence length {sequence_length}"
            )
        cuts.append(end)
    return cuts


def cut_document(unit: TokenizedUnit, *, sequence_length: int, layout: VocabLayout) -> SequenceBatch:
    """A document's rows (`document_cuts`), the last padded; timestep 0 on its tokens."""
    return cut_documents([unit], sequence_length=sequence_length, layout=layout)


def cut_documents(units: Sequence[TokenizedUnit], *, sequence_length: int, layout: VocabLayout) -> SequenceBatch:
    """Several documents' rows in one batch: each document's rows as `cut_document` gives
    them, documents one after the other; `sequence_index` counts rows within their document."""
    runs: list[tuple[int, int, int, int]] = []
    row_keys: list[str] = []
    source_keys: list[tuple[str, ...]] = []
    within: list[int] = []
    for unit in units:
        cuts = document_cuts(unit, sequence_length=sequence_length)
        for s in range(len(cuts) - 1):
            runs.append((cuts[s + 1] - cuts[s], len(row_keys), 0, 0))
            row_keys.append(unit.key)
            source_keys.append((unit.source_key,))
            within.append(s)
    batch = _rows_batch(
        units, _Runs.of(runs), num_rows=len(row_keys), length=sequence_length, layout=layout,
        row_keys=row_keys, source_keys=source_keys,
    )
    return dataclasses.replace(batch, sequence_index=np.asarray(within, dtype=np.int32))
