"""Vision-language and text records -> tokenized units (spec section 8).

One record gives its units (`TokenizedUnit`) and the rejects of what could not be used:
- caption pair: `[image patches][caption ids][E]`, one pair per caption;
- VQA pair: `[image patches][ids of "Q: {question} A:"][ids of the answer][E]`;
- text document: `[ids of the text][E]`;
- interleaved document: images and text runs in page order, each text run encoded on
  its own, E at the end.
E is the model's end-of-sequence id, omitted when `UnitConfig.eos_id` is None.

Invariants of every unit: image tokens are `layout.image_placeholder` (modality IMAGE, loss
0) with one patch each; conditioning tokens (an image's patches, then a VQA question) have
loss 0 and local positions 0, 1, ... counted from the start of their image (a question
continues after its image's patches); loss-bearing tokens (captions, answers, document
text, E) have loss 1 and local position LOCAL_POSITION_TABLE - 1 (511).

Rejects are (reason, field, detail), reasons from `schemas/vl.py`, the detail naming the
record key, the field and the value. A bad image (missing, URL only, undecodable, more
patches than L) rejects its whole record; an empty or non-UTF-8 caption, or a pair longer
than L, rejects that pair alone; in a VQA pair, a text document or an interleaved document,
any bad part rejects the unit (the whole record). `record.problems` reject the record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from schemas.vl import (
    CORRUPT_IMAGE,
    DEFAULT_IMAGE_SIZE,
    EMPTY_TEXT,
    IMAGE_TOO_LARGE,
    INVALID_UTF8,
    KIND_CAPTION,
    KIND_INTERLEAVED,
    KIND_TEXT,
    KIND_VQA,
    M_ANSWER,
    M_CAPTIONS,
    M_IMAGE,
    M_IMAGES,
    M_QUESTION,
    M_TEXT,
    M_TEXTS,
    UNIT_TOO_LONG,
    VQA_PROMPT,
)
from schemas.vocab import (
    DEFAULT_SEQUENCE_LENGTH,
    GATO,
    LOCAL_POSITION_TABLE,
    PATCH_SIZE,
    TEXT_VOCAB_SIZE,
    Modality,
    VocabLayout,
)
from transforms.errors import TokenizationError
from transforms.text import SentencePieceTokenizer
from transforms.vl_image import image_to_patches
from transforms.vl_types import ImageRef, RecordOutcome, Segment, TokenizedUnit, VLRecord

TARGET_POSITION = LOCAL_POSITION_TABLE - 1  # the local position of every loss-bearing token
_VALUE_CHARS = 60  # how much of a bad value a reject's detail quotes
Reject = tuple[str, str | None, str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnitConfig:
    """Tokenization options. `eos_id` None: the model has no end-of-sequence id, E is omitted.

    Invariant: an image's (S / 16)^2 patches fit the local position table below its last
    index, so conditioning positions never reach the target index 511.
    """

    eos_id: int | None
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    image_size: int = DEFAULT_IMAGE_SIZE
    layout: VocabLayout = GATO

    def __post_init__(self) -> None:
        if self.sequence_length < 1:
            raise ValueError(f"sequence length must be >= 1, got {self.sequence_length}")
        if self.image_size < PATCH_SIZE or self.image_size % PATCH_SIZE:
            raise ValueError(f"image size {self.image_size} is not a positive multiple of {PATCH_SIZE}")
        if self.patches_per_image > TARGET_POSITION:
            raise ValueError(
                f"image size {self.image_size} gives {self.patches_per_image} patches per image; "
                f"at most {TARGET_POSITION} fit the local position table"
            )
        if self.eos_id is not None and not 0 <= self.eos_id < TEXT_VOCAB_SIZE:
            raise ValueError(f"eos id {self.eos_id} is outside the text range [0, {TEXT_VOCAB_SIZE})")

    @property
    def patches_per_image(self) -> int:
        return (self.image_size // PATCH_SIZE) ** 2


class _Rejected(Exception):
    """A part that cannot be used: carries its reject (reason, field, detail)."""

    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.entry: Reject = (reason, field, detail)


@dataclasses.dataclass(frozen=True)
class _Image:
    patches: np.ndarray  # uint8 [P, 16*16*3], read-only (shared by a record's pairs)
    positions: np.ndarray  # int16 [P, 4]


@dataclasses.dataclass(frozen=True)
class _Text:
    ids: np.ndarray  # int32
    target: bool  # loss-bearing (position 511) or conditioning (positions from `first_position`)
    first_position: int = 0


def _where(record: VLRecord, field: str, index: int | None) -> str:
    at = f"{field}[{index}]" if index is not None else field
    return f"record {record.key!r} ({record.source_file} #{record.index_in_file}), field {at}"


def _image(
    ref: Segment, record: VLRecord, config: UnitConfig, *, field: str, index: int | None = None
) -> _Image:
    """Decode one image (spec section 8 rule) or raise `_Rejected` with its reason."""
    if not isinstance(ref, ImageRef):
        raise ValueError(f"{_where(record, field, index)}: expected an image, got {type(ref).__name__}")
    if ref.problem is not None:
        raise _Rejected(ref.problem, field, f"{_where(record, field, index)}: {ref.detail}")
    try:
        patches, positions = image_to_patches(ref.data, size=config.image_size)  # type: ignore[arg-type]
    except TokenizationError as exc:
        raise _Rejected(
            CORRUPT_IMAGE, field, f"{_where(record, field, index)}: {exc.detail} (value {exc.value})"
        ) from None
    if patches.shape[0] > config.sequence_length:
        raise _Rejected(
            IMAGE_TOO_LARGE, field,
            f"{_where(record, field, index)}: {patches.shape[0]} patches > sequence length "
            f"{config.sequence_length}",
        )
    patches.flags.writeable = False
    return _Image(patches, positions)


def _text(raw: Segment, record: VLRecord, *, field: str, index: int | None = None) -> str:
    """Raw text bytes -> str, or `_Rejected` (INVALID_UTF8, or EMPTY_TEXT for blank text)."""
    if not isinstance(raw, bytes):
        raise ValueError(f"{_where(record, field, index)}: expected text bytes, got {type(raw).__name__}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Rejected(
            INVALID_UTF8, field,
            f"{_where(record, field, index)}: not UTF-8 ({exc.reason} at byte {exc.start}) "
            f"(value {raw[max(0, exc.start - 8): exc.end + 8]!r})",
        ) from None
    if not text.strip():
        raise _Rejected(
            EMPTY_TEXT, field, f"{_where(record, field, index)}: empty or whitespace-only (value {text!r})"
        )
    return text


def _build(
    parts: Sequence[_Image | _Text], *, key: str, order_index: int, source_key: str, config: UnitConfig
) -> TokenizedUnit:
    """Concatenate parts (then E) into one unit (module invariants)."""
    if config.eos_id is not None:
        parts = [*parts, _Text(np.array([config.eos_id], dtype=np.int32), target=True)]
    tokens, modality, loss, local, spans = [], [], [], [], []
    images = [p for p in parts if isinstance(p, _Image)]
    at = 0
    for part in parts:
        if isinstance(part, _Image):
            n = part.patches.shape[0]
            tokens.append(np.full(n, config.layout.image_placeholder, dtype=np.int32))
            local.append(np.arange(n, dtype=np.int16))
            spans.append((at, at + n))
        else:
            n = part.ids.shape[0]
            tokens.append(part.ids.astype(np.int32, copy=False))
            local.append(
                np.full(n, TARGET_POSITION, dtype=np.int16) if part.target
                else np.arange(part.first_position, part.first_position + n, dtype=np.int16)
            )
        kind = Modality.IMAGE if isinstance(part, _Image) else Modality.TEXT
        modality.append(np.full(n, int(kind), dtype=np.int8))
        loss.append(np.full(n, isinstance(part, _Text) and part.target, dtype=bool))
        at += n
    unit_tokens = np.concatenate(tokens)
    unit_modality = np.concatenate(modality)
    return TokenizedUnit(
        key=key,
        order_index=order_index,
        source_key=source_key,
        tokens=unit_tokens,
        modality=unit_modality,
        loss_mask=np.concatenate(loss),
        local_positions=np.concatenate(local).astype(np.int16, copy=False),
        # One image (every pair): its read-only array itself, not a copy per caption.
        patch_pixels=_stack([i.patches for i in images], np.uint8, 3 * PATCH_SIZE**2),
        patch_positions=_stack([i.positions for i in images], np.int16, 4),
        image_spans=np.asarray(spans, dtype=np.int64).reshape(-1, 2),
        text_tokens=int(np.count_nonzero(unit_modality == int(Modality.TEXT))),
    )


def _stack(arrays: list[np.ndarray], dtype: type, width: int) -> np.ndarray:
    """The arrays one after the other; a single array is returned as is (no copy)."""
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays) if arrays else np.zeros((0, width), dtype=dtype)


def _pair(
    parts: Sequence[_Image | _Text], record: VLRecord, config: UnitConfig, *, field: str, index: int
) -> TokenizedUnit:
    """A pair unit, or `_Rejected` (UNIT_TOO_LONG) when it has more than L tokens."""
    unit = _build(parts, key=record.key, order_index=index, source_key=f"{record.key}#{index}", config=config)
    if unit.num_tokens > config.sequence_length:
        raise _Rejected(
            UNIT_TOO_LONG, field,
            f"{_where(record, field, index)}: the pair has {unit.num_tokens} tokens > sequence length "
            f"{config.sequence_length}",
        )
    return unit


def _caption_units(record: VLRecord, tokenizer: SentencePieceTokenizer, config: UnitConfig) -> RecordOutcome:
    """One pair per caption; the image is decoded once for all of them."""
    if not record.segments:
        raise ValueError(f"{_where(record, M_IMAGE, None)}: a caption record needs an image segment")
    image = _image(record.segments[0], record, config, field=M_IMAGE)
    captions = record.segments[1:]
    if not captions:
        raise _Rejected(
            EMPTY_TEXT, M_CAPTIONS, f"{_where(record, M_CAPTIONS, None)}: the record has no captions"
        )
    texts: dict[int, str] = {}
    rejects: dict[int, Reject] = {}  # by caption index, so they come out in caption order
    for i, raw in enumerate(captions):
        try:
            texts[i] = _text(raw, record, field=M_CAPTIONS, index=i)
        except _Rejected as rejected:
            rejects[i] = rejected.entry
    units: list[TokenizedUnit] = []
    for i, ids in zip(texts, tokenizer.encode_batch(list(texts.values())), strict=True):
        try:
            units.append(_pair([image, _Text(ids, target=True)], record, config, field=M_CAPTIONS, index=i))
        except _Rejected as rejected:
            rejects[i] = rejected.entry
    return RecordOutcome(record, tuple(units), tuple(rejects[i] for i in sorted(rejects)))


def _vqa_units(record: VLRecord, tokenizer: SentencePieceTokenizer, config: UnitConfig) -> RecordOutcome:
    """One pair: the image and the question (conditioning), the answer (target)."""
    if len(record.segments) != 3:
        raise ValueError(
            f"{_where(record, M_QUESTION, None)}: a VQA record has (image, question, answer), "
            f"got {len(record.segments)} segments"
        )
    image = _image(record.segments[0], record, config, field=M_IMAGE)
    question = _text(record.segments[1], record, field=M_QUESTION)
    answer = _text(record.segments[2], record, field=M_ANSWER)
    prompt_ids, answer_ids = tokenizer.encode_batch([VQA_PROMPT.format(question=question), answer])
    patches = image.patches.shape[0]
    if patches + prompt_ids.shape[0] > TARGET_POSITION:
        # The question's local positions would reach the target index.
        raise _Rejected(
            UNIT_TOO_LONG, M_QUESTION,
            f"{_where(record, M_QUESTION, None)}: {patches} patches + {prompt_ids.shape[0]} question tokens "
            f"exceed the {TARGET_POSITION} conditioning positions (value {question[:_VALUE_CHARS]!r})",
        )
    parts = [image, _Text(prompt_ids, target=False, first_position=patches), _Text(answer_ids, target=True)]
    return RecordOutcome(record, (_pair(parts, record, config, field=M_ANSWER, index=0),), ())


def _document(record: VLRecord, parts: Sequence[_Image | _Text], config: UnitConfig) -> RecordOutcome:
    unit = _build(parts, key=record.key, order_index=0, source_key=record.key, config=config)
    return RecordOutcome(record, (unit,), ())


def _text_units(record: VLRecord, tokenizer: SentencePieceTokenizer, config: UnitConfig) -> RecordOutcome:
    if len(record.segments) != 1:
        raise ValueError(
            f"{_where(record, M_TEXT, None)}: a text record has one segment, got {len(record.segments)}"
        )
    (ids,) = tokenizer.encode_batch([_text(record.segments[0], record, field=M_TEXT)])
    return _document(record, [_Text(ids, target=True)], config)


def _interleaved_units(record: VLRecord, tokenizer: SentencePieceTokenizer, config: UnitConfig) -> RecordOutcome:
    """Images and text runs in page order; the first bad part rejects the document."""
    slots: list[_Image | str] = [
        _image(seg, record, config, field=M_IMAGES, index=i) if isinstance(seg, ImageRef)
        else _text(seg, record, field=M_TEXTS, index=i)
        for i, seg in enumerate(record.segments)
    ]
    texts = [s for s in slots if isinstance(s, str)]
    if not texts:
        raise _Rejected(
            EMPTY_TEXT, M_TEXTS, f"{_where(record, M_TEXTS, None)}: the document has no text ({len(slots)} images)"
        )
    encoded = iter(tokenizer.encode_batch(texts))
    parts = [_Text(next(encoded), target=True) if isinstance(s, str) else s for s in slots]
    return _document(record, parts, config)


_BY_KIND = {
    KIND_CAPTION: _caption_units,
    KIND_VQA: _vqa_units,
    KIND_TEXT: _text_units,
    KIND_INTERLEAVED: _interleaved_units,
}


def tokenize_record(record: VLRecord, tokenizer: SentencePieceTokenizer, config: UnitConfig) -> RecordOutcome:
    """The record's units and rejects (module invariants). A record that does not match its
    kind's segment layout (a reader bug, not bad input) is a ValueError."""
    if record.problems:
        return RecordOutcome(record, (), tuple(record.problems))
    try:
        by_kind = _BY_KIND[record.kind]
    except KeyError:
        raise ValueError(f"record {record.key!r}: unknown kind {record.kind!r}; known: {sorted(_BY_KIND)}") from None
    try:
        return by_kind(record, tokenizer, config)
    except _Rejected as rejected:
        return RecordOutcome(record, (), (rejected.entry,))
