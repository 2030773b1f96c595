from __future__ import annotations

from pathlib import Path

import pytest

from formats.vl_fields import (
    MISSING,
    captions_of,
    choose_answer,
    image_ref,
    interleaved_segments,
    lookup,
    record_key,
    row_segments,
    text_bytes,
)
from schemas.vl import (
    EMPTY_TEXT,
    IMAGE_URL_ONLY,
    KIND_CAPTION,
    KIND_TEXT,
    KIND_VQA,
    MISSING_FIELD,
    MISSING_IMAGE,
    UNREADABLE_RECORD,
    FieldMapping,
)
from transforms.vl_types import ImageRef

MAPPING = FieldMapping()


def test_lookup_tries_the_whole_name_then_a_dotted_path() -> None:
    row = {"image/id": 7, "a.b": 1, "a": {"b": 2, "c": None}, "json": {"question": "q"}}
    assert lookup(row, "image/id") == 7
    assert lookup(row, "a.b") == 1  # a column named with a dot wins over the path
    assert lookup(row, "a.c") is None  # a null is a value, not absent
    assert lookup(row, "json.question") == "q"
    assert lookup(row, "a.d") is MISSING
    assert lookup(row, "json.question.x") is MISSING


@pytest.mark.parametrize(
    ("row", "kind", "expected"),
    [
        ({"key": "k1", "question_id": 5, "image_id": 9}, KIND_VQA, "k1"),
        ({"question_id": 5, "image_id": 9}, KIND_VQA, "5"),
        ({"question_id": 5, "image_id": 9}, KIND_CAPTION, "9"),
        ({"image_id": 9}, KIND_VQA, "f.parquet:4"),  # VQA never falls back to the image id
        ({"key": None, "image_id": b"img9"}, KIND_CAPTION, "img9"),
        ({"image/id": [123]}, KIND_CAPTION, "123"),
        ({}, KIND_TEXT, "f.parquet:4"),
    ],
)
def test_record_key_follows_the_spec_order(row: dict, kind: str, expected: str) -> None:
    assert record_key(row, MAPPING, kind=kind, file_name="f.parquet", index=4) == expected


def test_choose_answer_prefers_multiple_choice_answer() -> None:
    assert choose_answer("yes", [{"answer": "no"}, {"answer": "no"}]) == b"yes"


def test_choose_answer_most_frequent_with_ties_to_the_first_in_the_list() -> None:
    answers = [{"answer": "two"}, {"answer": "2"}, {"answer": "2"}, {"answer": "two"}, {"answer": "Two"}]
    assert choose_answer(None, answers) == b"two"  # 2 votes each: "two" comes first
    assert choose_answer(None, ["a", "b", "b"]) == b"b"
    assert choose_answer(MISSING, {"answer": ["x", "y", "y"]}) == b"y"  # struct of lists
    assert choose_answer(None, []) is None
    assert choose_answer(None, MISSING) is None


def test_choose_answer_compares_exact_strings() -> None:
    assert choose_answer(None, ["Yes", "yes ", "yes", "yes"]) == b"yes"


def test_captions_of_every_layout() -> None:
    assert captions_of("one", MAPPING) == [b"one"]
    assert captions_of(["a", b"b"], MAPPING) == [b"a", b"b"]
    coco = [{"id": 1, "text": "first"}, {"id": 2, "text": "second"}]
    assert captions_of(coco, MAPPING) == [b"first", b"second"]
    assert captions_of([{"raw": "r"}], MAPPING) == [b"r"]
    assert captions_of({"text": ["s1", "s2"], "id": [1, 2]}, MAPPING) == [b"s1", b"s2"]
    assert captions_of(["a", None], MAPPING) == [b"a", b""]


def test_text_bytes_keeps_the_bytes_the_file_held() -> None:
    assert text_bytes(b"bad\xff") == b"bad\xff"
    assert text_bytes(b"bad\xff".decode("utf-8", "surrogateescape")) == b"bad\xff"
    assert text_bytes("\ud800") == b"\xed\xa0\x80"  # a lone surrogate stays invalid UTF-8
    assert text_bytes(12) == b"12"
    assert text_bytes({"a": 1}) is None
    assert text_bytes(True) is None


def test_image_ref_bytes_relative_path_missing_path_and_url(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"PNGDATA")
    base = str(tmp_path)
    assert image_ref({"bytes": b"raw", "path": "ignored.png"}, base_url=base) == ImageRef(b"raw")
    assert image_ref({"bytes": None, "path": "imgs/a.png"}, base_url=base) == ImageRef(b"PNGDATA")
    assert image_ref("imgs/a.png", base_url=base) == ImageRef(b"PNGDATA")
    assert image_ref(str(tmp_path / "imgs" / "a.png"), base_url="/elsewhere") == ImageRef(b"PNGDATA")
    assert image_ref({"bytes": None, "path": "imgs/b.png"}, base_url=base) == ImageRef(
        None, problem=MISSING_IMAGE, detail="imgs/b.png"
    )
    assert image_ref({"bytes": None, "path": None}, base_url=base).problem == MISSING_IMAGE
    assert image_ref("https://x.org/a.jpg", base_url=base) == ImageRef(
        None, problem=IMAGE_URL_ONLY, detail="https://x.org/a.jpg"
    )
    assert image_ref(b"\x89PNG", base_url=base) == ImageRef(b"\x89PNG")
    assert image_ref(3, base_url=base).problem == MISSING_IMAGE


def test_row_segments_name_missing_parts_as_problems() -> None:
    segments, problems = row_segments({"image": b"I"}, MAPPING, kind=KIND_CAPTION, base_url="")
    assert segments == [ImageRef(b"I")]
    assert problems == [(MISSING_FIELD, "captions", "none of the fields ['captions', 'caption', 'text'] in the record")]
    segments, problems = row_segments({"image": b"I", "captions": []}, MAPPING, kind=KIND_CAPTION, base_url="")
    assert problems == [(EMPTY_TEXT, "captions", "field 'captions' holds no captions")]
    segments, problems = row_segments({"question": "q?"}, MAPPING, kind=KIND_VQA, base_url="")
    assert segments == [ImageRef(None, problem=MISSING_IMAGE, detail="none of the fields ['image'] in the record"), b"q?", b""]
    assert [p[0] for p in problems] == [MISSING_FIELD]


def test_a_document_joins_every_present_text_field_with_a_blank_line() -> None:
    wiki = MAPPING.replace({"text": ("title", "text", "content")})
    segments, problems = row_segments({"title": "T", "text": "body"}, wiki, kind=KIND_TEXT, base_url="")
    assert (segments, problems) == ([b"T\n\nbody"], [])
    segments, problems = row_segments({"content": "oscar"}, wiki, kind=KIND_TEXT, base_url="")
    assert segments == [b"oscar"]
    segments, problems = row_segments({"title": None}, wiki, kind=KIND_TEXT, base_url="")
    assert segments == [b""] and [p[0] for p in problems] == [MISSING_FIELD]


def test_interleaved_segments_in_page_order_and_misalignment() -> None:
    problems: list = []
    segments = interleaved_segments([None, b"I1", None, b"I2"], ["t0", None, "t2", None], base_url="", problems=problems)
    assert segments == [b"t0", ImageRef(b"I1"), b"t2", ImageRef(b"I2")] and problems == []
    segments = interleaved_segments([b"I", None], ["t", None], base_url="", problems=problems)
    assert problems == [
        (UNREADABLE_RECORD, "images", "index 0 has both an image and a text"),
        (UNREADABLE_RECORD, "images", "index 1 has neither an image nor a text"),
    ]
    problems = []
    assert interleaved_segments([None], ["a", "b"], base_url="", problems=problems) == []
    assert problems[0][0] == UNREADABLE_RECORD
