"""The records, units and outcomes of vision-language and text data (spec section 8):
the contracts between reading (`formats/vl_*.py`), tokenization (`transforms/vl_units.py`),
sequencing (`transforms/vl_sequence.py`) and statistics (`transforms/vl_stats.py`).

Readers never decode: images stay encoded bytes and text stays raw bytes (whatever the
file held), so a bad image or invalid UTF-8 is found, and rejected with its reason, in
one place, the tokenizer.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """One image of a record: its encoded bytes, or why there are none.

    Invariant: exactly one of `data` and `problem` is set. `problem` is a reason code of
    `schemas/vl.py` (MISSING_IMAGE, IMAGE_URL_ONLY, MISSING_FIELD); `detail` says what was
    looked for (the missing path, the URL).
    """

    data: bytes | None
    problem: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.problem is None):
            raise ValueError(f"ImageRef needs exactly one of data and problem: {self.problem!r}")


# A segment of a record: an image, or a text as raw bytes (UTF-8 expected, not checked).
Segment = ImageRef | bytes


@dataclasses.dataclass(frozen=True)
class VLRecord:
    """One record as read: its key, where it came from, and its segments.

    `segments` by kind (`schemas/vl.py`):
    - caption: `(image, caption_0, caption_1, ...)`, one pair per caption;
    - vqa: `(image, question, answer)` (the answer already chosen, `choose_answer`);
    - text: `(document,)`;
    - interleaved: images and texts in page order.
    `key` is the record key of spec section 8 (format-independent where the data gives
    one); `source_file` is relative to the data dir; `index_in_file` counts records.
    `problems`: (reason, field, detail) of parts the reader could not get (a missing
    column), which reject the record.
    """

    dataset: str
    task: str
    kind: str
    key: str
    source_file: str
    index_in_file: int
    work_item: int
    segments: tuple[Segment, ...]
    problems: tuple[tuple[str, str | None, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class TokenizedUnit:
    """One unit (a pair or a document) as tokens, spec section 8.

    Invariants (N tokens, P patches): `tokens` int32[N], `modality` int8[N], `loss_mask`
    bool[N], `local_positions` int16[N]; image tokens (modality IMAGE) carry one patch
    each, in token order: `patch_pixels` uint8[P, 16*16*3], `patch_positions` int16[P, 4];
    `image_spans` int64[I, 2]: [start, stop) token range of each image (a document row
    never ends inside one); `text_tokens`: tokens of modality TEXT (E included).
    `source_key`: `<record key>#<caption index>` for pairs, the record key for documents.
    `order_index`: the caption index (pairs), 0 for documents.
    """

    key: str
    order_index: int
    source_key: str
    tokens: np.ndarray
    modality: np.ndarray
    loss_mask: np.ndarray
    local_positions: np.ndarray
    patch_pixels: np.ndarray
    patch_positions: np.ndarray
    image_spans: np.ndarray
    text_tokens: int

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])


@dataclasses.dataclass(frozen=True)
class RecordOutcome:
    """What became of one record: its units, and the reasons of what was rejected.

    A record is kept when it has at least one unit (spec section 8); `rejects` are
    (reason, field, detail), one per rejected pair, or the whole record's reason.
    """

    record: VLRecord
    units: tuple[TokenizedUnit, ...]
    rejects: tuple[tuple[str, str | None, str], ...]

    @property
    def kept(self) -> bool:
        return bool(self.units)


@dataclasses.dataclass(frozen=True)
class OutcomeCounts:
    """What the statistics need of a RecordOutcome, without its pixels or tokens: so the
    job hands the statistics kilobytes where the outcome holds the record's images.

    `unit_text_tokens`: TEXT tokens of each kept unit, in order (empty: the record is
    rejected); `rejects` as in RecordOutcome.
    """

    dataset: str
    task: str
    key: str
    source_file: str
    index_in_file: int
    unit_text_tokens: tuple[int, ...]
    rejects: tuple[tuple[str, str | None, str], ...]

    @classmethod
    def of(cls, outcome: RecordOutcome) -> OutcomeCounts:
        r = outcome.record
        return cls(
            dataset=r.dataset, task=r.task, key=r.key, source_file=r.source_file, index_in_file=r.index_in_file,
            unit_text_tokens=tuple(int(u.text_tokens) for u in outcome.units), rejects=outcome.rejects,
        )

    @property
    def kept(self) -> bool:
        return bool(self.unit_text_tokens)
