"""Per-task statistics of vision-language and text data (spec section 8, "Stats per task").

`VLTaskBook` is a mergeable accumulator, meant to be a Beam CombineFn's accumulator:
`add_outcome` takes every `RecordOutcome` of the task (kept or not), `add_rows` every
`SequenceBatch` written for it, `merge` joins two books, and `summary` gives the stats
record (keys `schemas.output.VST_*`, the columns of `VL_STATS_SCHEMA`).

Invariants: every figure is a sum (ints, or bincounts as int64 arrays), so a book's
summary is the same whatever the order of its inputs and merges; its size does not grow
with the records (text tokens per unit: a dense bincount up to the sequence length L,
and the rare longer documents as sorted distinct values with their counts), so the median
is exact and a merge is cheap.

Counting rules: a record is kept if it has a unit; a rejected record counts once, under
its first reject's reason (read = kept + rejected). The rejects of a kept record are the
pairs it lost (a caption that was empty), counted by reason apart from the records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from schemas import output as out
from schemas.vl import MAX_PAIRS_PER_ROW
from schemas.vocab import Modality
from transforms.sequence import SequenceBatch
from transforms.vl_types import OutcomeCounts, RecordOutcome


def _count(counts: dict[str, int], reason: str, n: int = 1) -> None:
    counts[reason] = counts.get(reason, 0) + n


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclasses.dataclass
class VLTaskBook:
    """One task's figures so far (module doc). Build with `VLTaskBook(sequence_length=L)`.

    `units_per_row[k]`: rows with k units (k in 0..MAX_PAIRS_PER_ROW; 0 never happens);
    `text_token_counts[n]`: units with n text tokens, n <= L; `long_text_tokens` (sorted,
    distinct, > L) with `long_text_counts`: the longer ones.
    """

    sequence_length: int
    records_kept: int = 0
    rejected_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    units_rejected_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    units: int = 0
    rows: int = 0
    tokens: int = 0
    text_tokens: int = 0
    image_tokens: int = 0
    loss_tokens: int = 0
    row_units: int = 0
    units_per_row: np.ndarray = dataclasses.field(default_factory=_empty)
    text_token_counts: np.ndarray = dataclasses.field(default_factory=_empty)
    long_text_tokens: np.ndarray = dataclasses.field(default_factory=_empty)
    long_text_counts: np.ndarray = dataclasses.field(default_factory=_empty)

    def __post_init__(self) -> None:
        if self.sequence_length < 1:
            raise ValueError(f"sequence length must be >= 1, got {self.sequence_length}")
        if not self.units_per_row.size:
            self.units_per_row = np.zeros(MAX_PAIRS_PER_ROW + 1, dtype=np.int64)
        if not self.text_token_counts.size:
            self.text_token_counts = np.zeros(self.sequence_length + 1, dtype=np.int64)

    @property
    def records_rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def records_read(self) -> int:
        return self.records_kept + self.records_rejected

    def add_outcome(self, outcome: RecordOutcome | OutcomeCounts) -> None:
        """Counts one record: kept (its units, their text tokens, the pairs it lost) or
        rejected (its first reason). A record with neither units nor a reason is a ValueError."""
        counts = outcome if isinstance(outcome, OutcomeCounts) else OutcomeCounts.of(outcome)
        if not counts.kept:
            if not counts.rejects:
                raise ValueError(
                    f"{counts.source_file}: record {counts.key!r} (index {counts.index_in_file}) has no "
                    "unit and no reject reason: it would be neither kept nor rejected"
                )
            _count(self.rejected_by_reason, counts.rejects[0][0])
            return
        self.records_kept += 1
        self.units += len(counts.unit_text_tokens)
        for reason, _, _ in counts.rejects:
            _count(self.units_rejected_by_reason, reason)
        self._add_text_tokens(np.array(counts.unit_text_tokens, dtype=np.int64))

    def _add_text_tokens(self, counts: np.ndarray) -> None:
        if counts.size and counts.min() < 0:
            raise ValueError(f"a unit with {int(counts.min())} text tokens")
        short = counts[counts <= self.sequence_length]
        self.text_token_counts += np.bincount(short, minlength=self.sequence_length + 1)
        long = counts[counts > self.sequence_length]
        if long.size:
            values, tally = np.unique(long, return_counts=True)
            self._add_long(values, tally.astype(np.int64))

    def _add_long(self, values: np.ndarray, counts: np.ndarray) -> None:
        merged, where = np.unique(np.concatenate([self.long_text_tokens, values]), return_inverse=True)
        summed = np.zeros(merged.size, dtype=np.int64)
        np.add.at(summed, where, np.concatenate([self.long_text_counts, counts]))
        self.long_text_tokens, self.long_text_counts = merged.astype(np.int64), summed

    def add_rows(self, batch: SequenceBatch) -> None:
        """Counts the rows of one batch: tokens by modality before padding, loss tokens and
        units per row (its `source_keys`). Rows of another length than the book's, or
        without source keys (episode rows), are a ValueError."""
        rows, length = batch.tokens.shape
        if length != self.sequence_length:
            raise ValueError(
                f"rows of {batch.episode_id!r} have {length} tokens, the book counts rows of {self.sequence_length}"
            )
        if batch.source_keys is None or len(batch.source_keys) != rows:
            raise ValueError(f"rows of {batch.episode_id!r} carry no source keys per row (episode rows?)")
        per_row = np.array([len(keys) for keys in batch.source_keys], dtype=np.int64)
        if rows and (per_row.min() < 1 or per_row.max() > MAX_PAIRS_PER_ROW):
            raise ValueError(
                f"rows of {batch.episode_id!r}: {per_row.tolist()} units per row, expected 1..{MAX_PAIRS_PER_ROW}"
            )
        filled = np.arange(length)[None, :] < np.asarray(batch.num_tokens, dtype=np.int64)[:, None]
        by_modality = np.bincount(batch.modality[filled].astype(np.int64), minlength=len(Modality))
        self.rows += rows
        self.tokens += int(filled.sum())
        self.text_tokens += int(by_modality[Modality.TEXT])
        self.image_tokens += int(by_modality[Modality.IMAGE])
        self.loss_tokens += int(batch.loss_mask[filled].sum())
        self.row_units += int(per_row.sum())
        self.units_per_row += np.bincount(per_row, minlength=MAX_PAIRS_PER_ROW + 1)

    def merge(self, other: VLTaskBook) -> VLTaskBook:
        """Adds `other` into this book and returns it (`other` is left as it was)."""
        if other.sequence_length != self.sequence_length:
            raise ValueError(
                f"cannot merge books of sequence lengths {self.sequence_length} and {other.sequence_length}"
            )
        for name in ("records_kept", "units", "rows", "tokens", "text_tokens", "image_tokens",
                     "loss_tokens", "row_units"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.rejected_by_reason.items():
            _count(self.rejected_by_reason, reason, n)
        for reason, n in other.units_rejected_by_reason.items():
            _count(self.units_rejected_by_reason, reason, n)
        self.units_per_row = self.units_per_row + other.units_per_row
        self.text_token_counts = self.text_token_counts + other.text_token_counts
        if other.long_text_tokens.size:
            self._add_long(other.long_text_tokens, other.long_text_counts)
        return self

    def _text_tokens_at(self, ranks: np.ndarray) -> np.ndarray:
        """The text-token counts of the units at 0-based `ranks` in ascending order."""
        values = np.concatenate([np.arange(self.sequence_length + 1, dtype=np.int64), self.long_text_tokens])
        cumulative = np.cumsum(np.concatenate([self.text_token_counts, self.long_text_counts]))
        return values[np.searchsorted(cumulative, ranks, side="right")]

    def summary(self, dataset: str, task: str) -> dict[str, Any]:
        """The task's stats record: `VL_STATS_SCHEMA`'s columns in order, plain Python values."""
        counted = int(self.text_token_counts.sum() + self.long_text_counts.sum())
        low = middle = high = None
        if counted:
            low, first, second, high = (
                int(v) for v in self._text_tokens_at(np.array([0, (counted - 1) // 2, counted // 2, counted - 1]))
            )
            middle = (first + second) / 2
        slots = self.rows * self.sequence_length
        record = {
            out.DATASET: dataset,
            out.TASK: task,
            out.VST_RECORDS_READ: self.records_read,
            out.VST_RECORDS_KEPT: self.records_kept,
            out.VST_RECORDS_REJECTED: self.records_rejected,
            out.VST_REJECTED_BY_REASON: dict(sorted(self.rejected_by_reason.items())),
            out.VST_UNITS_REJECTED_BY_REASON: dict(sorted(self.units_rejected_by_reason.items())),
            out.VST_UNITS: self.units,
            out.VST_SEQUENCE_LENGTH: self.sequence_length,
            out.VST_ROWS: self.rows,
            out.VST_TOKENS: self.tokens,
            out.VST_TEXT_TOKENS: self.text_tokens,
            out.VST_IMAGE_TOKENS: self.image_tokens,
            out.VST_LOSS_TOKENS: self.loss_tokens,
            out.VST_PADDING_TOKENS: slots - self.tokens,
            out.VST_PADDING_FRACTION: (slots - self.tokens) / slots if slots else None,
            out.VST_UNITS_PER_ROW_MEAN: self.row_units / self.rows if self.rows else None,
            out.VST_UNITS_PER_ROW_HISTOGRAM: [int(n) for n in self.units_per_row[1:]],
            out.VST_UNIT_TEXT_TOKENS_MIN: low,
            out.VST_UNIT_TEXT_TOKENS_MEDIAN: middle,
            out.VST_UNIT_TEXT_TOKENS_MAX: high,
        }
        return {field.name: record[field.name] for field in out.VL_STATS_SCHEMA}


def merge_books(books: Iterable[VLTaskBook], *, sequence_length: int) -> VLTaskBook:
    """All `books` merged into the first (a CombineFn's `merge_accumulators`); an empty
    book of `sequence_length` when there are none."""
    remaining = iter(books)
    merged = next(remaining, None)
    merged = VLTaskBook(sequence_length=sequence_length) if merged is None else merged
    for book in remaining:
        merged.merge(book)
    return merged
