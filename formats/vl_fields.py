"""Field helpers shared by the vision-language readers (spec section 8): looking parts up
in a row, the record key, the answer choice, captions, image references, and a row ->
`VLRecord` for row formats (HF Parquet, JSONL).

A *row* is a dict (a Parquet row as `to_pylist` gives it, a JSON object); its values may
be nested dicts and lists. Text is never decoded here: every text part becomes raw bytes
(`text_bytes`), so invalid UTF-8 reaches the tokenizer, which rejects it with its reason.
A JSON string is turned back into the bytes the file held (`surrogateescape`, see
`formats/vl_text.py`).

What a reader cannot get becomes a problem, never an exception: an image it cannot find
is an `ImageRef` with a problem (MISSING_IMAGE, IMAGE_URL_ONLY); a missing text part is
b"" in `segments` and a (reason, field, detail) in `VLRecord.problems`, so every record
read is one record kept or rejected.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec

from schemas.vl import (
    EMPTY_TEXT,
    IMAGE_URL_ONLY,
    KIND_CAPTION,
    KIND_INTERLEAVED,
    KIND_TEXT,
    KIND_VQA,
    MISSING_FIELD,
    MISSING_IMAGE,
    UNREADABLE_RECORD,
    FieldMapping,
)
from transforms.episode import WorkItem
from transforms.vl_types import ImageRef, Segment, VLRecord

MISSING: Any = object()  # a lookup that found nothing (None is a value: a null cell)
TEXT_JOIN = b"\n\n"  # several text columns (title, text) make one document
URL_SCHEMES = ("http://", "https://")
Problem = tuple[str, str | None, str]


def lookup(row: Any, name: str) -> Any:
    """The value at `name` in a nested row, MISSING if absent. The whole name is tried as
    a key first (a column may be named `image/id` or `a.b`), then as a dotted path."""
    if isinstance(row, Mapping) and name in row:
        return row[name]
    node = row
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def first_present(row: Any, names: Sequence[str]) -> tuple[str | None, Any]:
    """(name, value) of the first of `names` present and not null; (None, MISSING) if none."""
    for name in names:
        value = lookup(row, name)
        if value is not MISSING and value is not None:
            return name, value
    return None, MISSING


def text_bytes(value: Any) -> bytes | None:
    """Raw bytes of a text value: bytes as they are; a str as the bytes it was read from
    (lone surrogates of `surrogateescape` become the original bytes; others stay invalid
    UTF-8, for the tokenizer to reject); an int rendered with str(). None: not text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a JSON-escaped lone surrogate: keep it, invalid
            return value.encode("utf-8", "surrogatepass")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    return None


def _key_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, list) and len(value) == 1:  # a TFDS scalar feature
        return _key_text(value[0])
    return str(value)


def record_key(row: Any, mapping: FieldMapping, *, kind: str, file_name: str, index: int) -> str:
    """Spec section 8's record key: the `key` column, else `question_id` (VQA) or
    `image_id` (other kinds), else `<file name>:<row index>`; ints rendered with str()."""
    ids = mapping.question_id if kind == KIND_VQA else mapping.image_id
    for names in (mapping.key, ids):
        name, value = first_present(row, names)
        if name is not None:
            return _key_text(value)
    return f"{file_name}:{index}"


def choose_answer(
    answer: Any, answers: Any, *, answer_text: Sequence[str] = ("answer",)
) -> bytes | None:
    """The VQA answer: `answer` (multiple_choice_answer) when present, else the most
    frequent of `answers` as exact byte strings, ties going to the one first in the list.

    `answers`: a list of strings, of structs with an `answer_text` member (VQAv2 and
    OK-VQA's `answers[*].answer`), or a struct of lists (`datasets`' Sequence of dicts).
    None: no answer at all.
    """
    if answer is not None and answer is not MISSING:
        return text_bytes(answer)
    if isinstance(answers, Mapping):
        _, answers = first_present(answers, answer_text)
    if not isinstance(answers, list):
        return None
    counts: dict[bytes, int] = {}  # insertion order = first appearance: the tie break
    for item in answers:
        if isinstance(item, Mapping):
            _, item = first_present(item, answer_text)
        text = text_bytes(item)
        if text is not None:
            counts[text] = counts.get(text, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(text for text, count in counts.items() if count == best)


def captions_of(value: Any, mapping: FieldMapping) -> list[bytes]:
    """The captions of a captions value: a string, a list of strings, a list of structs
    with a `caption_text` member (COCO's `captions[*].text`), or a struct of lists. A
    null caption is b"" (the tokenizer rejects that pair as empty)."""
    if isinstance(value, Mapping):
        _, value = first_present(value, mapping.caption_text)
        if value is MISSING:
            return []
    if not isinstance(value, list):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, Mapping):
            _, item = first_present(item, mapping.caption_text)
        out.append(text_bytes(item) or b"")
    return out


def is_url(value: Any) -> bool:
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value
    return isinstance(text, str) and text.lower().startswith(URL_SCHEMES)


def _image_at(path: str, *, base_url: str) -> ImageRef:
    """The image file at `path` (relative to `base_url`, the record file's directory)."""
    if is_url(path):
        return ImageRef(None, problem=IMAGE_URL_ONLY, detail=path)
    absolute = "://" in path or path.startswith("/")
    url = path if absolute else posixpath.join(base_url.rstrip("/"), path)
    try:
        with fsspec.open(url, "rb") as handle:
            return ImageRef(handle.read())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ImageRef(None, problem=MISSING_IMAGE, detail=path)


def image_ref(value: Any, *, base_url: str) -> ImageRef:
    """An image value as an `ImageRef`: an HF image struct {bytes, path} (its bytes, else
    the file at its path, relative to `base_url`), raw bytes, or a path or URL string.
    A URL is IMAGE_URL_ONLY (a worker never touches the network); nothing is MISSING_IMAGE."""
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            return ImageRef(bytes(data))
        if path is None:
            return ImageRef(None, problem=MISSING_IMAGE, detail="image struct with neither bytes nor path")
        value = path
    if isinstance(value, (bytes, bytearray)) and is_url(value):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return _image_at(value, base_url=base_url)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ImageRef(bytes(value))
    return ImageRef(None, problem=MISSING_IMAGE, detail=f"no image ({type(value).__name__})")


def _bytes_path(value: Any) -> Any:
    """Parquet reads strings as binary: a path or URL in bytes is a str again (paths are
    names, not text for the model)."""
    return bytes(value).decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value


def _image_part(row: Any, names: Sequence[str], *, base_url: str) -> ImageRef:
    name, value = first_present(row, names)
    if name is None:
        return ImageRef(None, problem=MISSING_IMAGE, detail=f"none of the fields {list(names)} in the record")
    if isinstance(value, Mapping) and value.get("bytes") is None:
        value = {"bytes": None, "path": _bytes_path(value.get("path"))}
    elif isinstance(value, (bytes, bytearray)) and is_url(value):
        value = _bytes_path(value)
    return image_ref(value, base_url=base_url)


def _text_part(row: Any, names: Sequence[str], problems: list[Problem]) -> bytes:
    name, value = first_present(row, names)
    if name is None:
        problems.append((MISSING_FIELD, names[0] if names else None, f"none of the fields {list(names)} in the record"))
        return b""
    text = text_bytes(value)
    if text is None:
        problems.append((UNREADABLE_RECORD, name, f"field {name!r} holds a {type(value).__name__}, not text"))
        return b""
    return text


def _caption_segments(row: Any, mapping: FieldMapping, problems: list[Problem]) -> list[bytes]:
    name, value = first_present(row, mapping.captions)
    if name is None:
        problems.append((MISSING_FIELD, mapping.captions[0], f"none of the fields {list(mapping.captions)} in the record"))
        return []
    captions = captions_of(value, mapping)
    if not captions:
        problems.append((EMPTY_TEXT, name, f"field {name!r} holds no captions"))
    return captions


def _vqa_segments(row: Any, mapping: FieldMapping, problems: list[Problem]) -> list[bytes]:
    question = _text_part(row, mapping.question, problems)
    _, answer = first_present(row, mapping.answer)
    _, answers = first_present(row, mapping.answers)
    chosen = choose_answer(answer, answers, answer_text=mapping.answer_text)
    if chosen is None:
        fields = [*mapping.answer, *mapping.answers]
        problems.append((MISSING_FIELD, fields[0] if fields else None, f"no answer in the fields {fields}"))
        chosen = b""
    return [question, chosen]


def _document(row: Any, mapping: FieldMapping, problems: list[Problem]) -> bytes:
    """Every present text field, in mapping order, joined by a blank line."""
    parts = []
    for name in mapping.text:
        value = lookup(row, name)
        if value is MISSING or value is None:
            continue
        text = text_bytes(value)
        if text is None:
            problems.append((UNREADABLE_RECORD, name, f"field {name!r} holds a {type(value).__name__}, not text"))
            continue
        parts.append(text)
    if not parts and not problems:
        problems.append((MISSING_FIELD, mapping.text[0] if mapping.text else None,
                         f"none of the fields {list(mapping.text)} in the record"))
    return TEXT_JOIN.join(parts)


def interleaved_segments(images: Any, texts: Any, *, base_url: str, problems: list[Problem]) -> list[Segment]:
    """OBELICS layout: aligned `images` / `texts` lists, exactly one non-null per index,
    in page order. A misaligned page is an UNREADABLE_RECORD problem."""
    if not isinstance(images, list) or not isinstance(texts, list) or len(images) != len(texts):
        problems.append((UNREADABLE_RECORD, "images", "images and texts are not two lists of one length"))
        return []
    segments: list[Segment] = []
    for index, (image, text) in enumerate(zip(images, texts)):
        if (image is None) == (text is None):
            which = "both an image and a text" if image is not None else "neither an image nor a text"
            problems.append((UNREADABLE_RECORD, "images", f"index {index} has {which}"))
        elif image is not None:
            segments.append(_image_part({"i": image}, ("i",), base_url=base_url))
        else:
            segments.append(_text_part({"t": text}, ("t",), problems))
    return segments


def row_segments(row: Any, mapping: FieldMapping, *, kind: str, base_url: str) -> tuple[list[Segment], list[Problem]]:
    """The segments of one row of `kind` (layout: `VLRecord`) and its problems."""
    problems: list[Problem] = []
    segments: list[Segment]
    if kind == KIND_CAPTION:
        segments = [_image_part(row, mapping.image, base_url=base_url), *_caption_segments(row, mapping, problems)]
    elif kind == KIND_VQA:
        segments = [_image_part(row, mapping.image, base_url=base_url), *_vqa_segments(row, mapping, problems)]
    elif kind == KIND_TEXT:
        segments = [_document(row, mapping, problems)]
    elif kind == KIND_INTERLEAVED:
        _, images = first_present(row, mapping.images)
        _, texts = first_present(row, mapping.texts)
        segments = interleaved_segments(images, texts, base_url=base_url, problems=problems)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return segments, problems


def row_record(row: Any, item: WorkItem, *, kind: str, mapping: FieldMapping, index: int) -> VLRecord:
    """The `VLRecord` of the `index`-th row of a work item's file (row formats)."""
    base_url = posixpath.dirname(item.shard_path)
    segments, problems = row_segments(row, mapping, kind=kind, base_url=base_url)
    return VLRecord(
        dataset=item.dataset,
        task=item.task,
        kind=kind,
        key=record_key(row, mapping, kind=kind, file_name=item.source_file, index=index),
        source_file=item.source_file,
        index_in_file=index,
        work_item=item.index,
        segments=tuple(segments),
        problems=tuple(problems),
    )


def unreadable_record(item: WorkItem, *, kind: str, index: int, detail: str) -> VLRecord:
    """The record of an entry that could not be read at all (a line that is not JSON, a
    corrupt TFRecord): keyed `<file>:<index>`, no segments, one UNREADABLE_RECORD problem."""
    return VLRecord(
        dataset=item.dataset, task=item.task, kind=kind, key=f"{item.source_file}:{index}",
        source_file=item.source_file, index_in_file=index, work_item=item.index,
        segments=(), problems=((UNREADABLE_RECORD, None, detail),),
    )
