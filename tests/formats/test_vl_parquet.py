from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from formats.vl_parquet import as_binary, iter_rows, mapped_columns, read_parquet
from schemas.vl import (
    INTERLEAVED,
    KIND_CAPTION,
    KIND_INTERLEAVED,
    KIND_TEXT,
    KIND_VQA,
    MISSING_FIELD,
    MISSING_IMAGE,
    FieldMapping,
)
from tests.formats.vl_fixtures import sample_records, hf_image_type, work_item, write_caption_parquet, write_parquet
from transforms.vl_types import ImageRef

MAPPING = FieldMapping()


def test_caption_records_in_file_order_with_keys(tmp_path: Path) -> None:
    path = write_caption_parquet(tmp_path / "cc" / "part-0.parquet")
    records = list(read_parquet(work_item(path, tmp_path), kind=KIND_CAPTION, mapping=MAPPING))
    assert records == sample_records("cc/part-0.parquet")


def test_coco_list_of_struct_captions_give_one_segment_per_caption(tmp_path: Path) -> None:
    captions_type = pa.list_(pa.struct([("id", pa.int64()), ("text", pa.string())]))
    path = write_parquet(tmp_path / "coco.parquet", {
        "image_id": [42],
        "image": pa.array([{"bytes": b"JPEG", "path": "x.jpg"}], hf_image_type()),
        "captions": pa.array([[{"id": 1, "text": "a cat"}, {"id": 2, "text": "a sitting cat"}]], captions_type),
    })
    [record] = read_parquet(work_item(path, tmp_path), kind=KIND_CAPTION, mapping=MAPPING)
    assert (record.key, record.segments, record.problems) == ("42", (ImageRef(b"JPEG"), b"a cat", b"a sitting cat"), ())


def test_vqav2_and_okvqa_layouts(tmp_path: Path) -> None:
    answers_type = pa.list_(pa.struct([("answer", pa.string()), ("answer_confidence", pa.string())]))
    answers = [{"answer": a, "answer_confidence": "yes"} for a in ("two", "2", "2", "two")]
    path = write_parquet(tmp_path / "vqa.parquet", {
        "question_id": [100, 101],
        "image_id": [7, 7],
        "image": pa.array([{"bytes": b"I", "path": None}] * 2, hf_image_type()),
        "question": ["How many?", "What colour?"],
        "multiple_choice_answer": [None, "red"],  # VQAv2 has one; OK-VQA rows do not
        "answers": pa.array([answers, answers], answers_type),
    })
    records = list(read_parquet(work_item(path, tmp_path), kind=KIND_VQA, mapping=MAPPING))
    assert [(r.key, r.segments) for r in records] == [
        ("100", (ImageRef(b"I"), b"How many?", b"two")),  # a tie: the first in the list
        ("101", (ImageRef(b"I"), b"What colour?", b"red")),
    ]


def test_text_columns_joined_and_only_mapped_columns_read(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "wiki.parquet", {
        "id": ["1", "2"], "title": ["Cats", None], "text": ["Cats are.", "Dogs are."], "url": ["u", "v"],
    })
    wiki = MAPPING.replace({"text": ("title", "text")})
    assert mapped_columns(pa.schema([("id", pa.string()), ("title", pa.string()), ("url", pa.string()),
                                     ("text", pa.string())]), wiki) == ["title", "text"]
    records = list(read_parquet(work_item(path, tmp_path), kind=KIND_TEXT, mapping=wiki))
    assert [(r.key, r.segments) for r in records] == [("wiki.parquet:0", (b"Cats\n\nCats are.",)),
                                                      ("wiki.parquet:1", (b"Dogs are.",))]


def test_invalid_utf8_passes_through_as_bytes(tmp_path: Path) -> None:
    text = pa.array([b"ok", b"caf\xe9"], pa.binary()).view(pa.string())  # a string column, not UTF-8
    path = write_parquet(tmp_path / "c4.parquet", {"text": text})
    records = list(read_parquet(work_item(path, tmp_path), kind=KIND_TEXT, mapping=MAPPING))
    assert [r.segments for r in records] == [(b"ok",), (b"caf\xe9",)]


def test_as_binary_reaches_into_lists_and_structs() -> None:
    nested = pa.struct([("a", pa.list_(pa.large_string())), ("b", pa.int32())])
    assert as_binary(nested) == pa.struct([("a", pa.list_(pa.large_binary())), ("b", pa.int32())])
    assert as_binary(pa.large_list(pa.string())) == pa.large_list(pa.binary())


def test_relative_image_paths_resolve_against_the_file_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "a.jpg").write_bytes(b"AJPEG")
    path = write_parquet(tmp_path / "data" / "train.parquet", {
        "key": ["a", "b"],
        "image": pa.array([{"bytes": None, "path": "images/a.jpg"}, {"bytes": None, "path": "images/b.jpg"}], hf_image_type()),
        "caption": ["found", "lost"],
    })
    records = list(read_parquet(work_item(path, tmp_path), kind=KIND_CAPTION, mapping=MAPPING))
    assert [r.segments[0] for r in records] == [
        ImageRef(b"AJPEG"), ImageRef(None, problem=MISSING_IMAGE, detail="images/b.jpg"),
    ]


def test_obelics_documents_keep_page_order(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "p.png").write_bytes(b"PATHPNG")
    path = write_parquet(tmp_path / "obelics.parquet", {
        "images": pa.array([[None, {"bytes": b"IMG1", "path": None}, None, {"bytes": None, "path": "img/p.png"}]],
                           pa.list_(hf_image_type())),
        "texts": pa.array([["intro", None, "middle", None]], pa.list_(pa.string())),
    })
    [record] = read_parquet(work_item(path, tmp_path), kind=KIND_INTERLEAVED, mapping=INTERLEAVED.mapping)
    assert record.segments == (b"intro", ImageRef(b"IMG1"), b"middle", ImageRef(b"PATHPNG"))
    assert record.problems == ()


def test_obelics_images_as_bytes_or_path_strings(tmp_path: Path) -> None:
    (tmp_path / "p.png").write_bytes(b"P")
    path = write_parquet(tmp_path / "o.parquet", {
        "images": pa.array([[b"RAW", None]], pa.list_(pa.binary())),
        "texts": pa.array([[None, "after"]], pa.list_(pa.string())),
    })
    path2 = write_parquet(tmp_path / "o2.parquet", {"images": [["p.png", None]], "texts": [[None, "t"]]})
    [a] = read_parquet(work_item(path, tmp_path), kind=KIND_INTERLEAVED, mapping=MAPPING)
    [b] = read_parquet(work_item(path2, tmp_path), kind=KIND_INTERLEAVED, mapping=MAPPING)
    assert (a.segments, b.segments) == ((ImageRef(b"RAW"), b"after"), (ImageRef(b"P"), b"t"))


def test_a_missing_column_is_a_problem_of_every_record(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "x.parquet", {"other": [1, 2]})
    records = list(read_parquet(work_item(path, tmp_path), kind=KIND_TEXT, mapping=MAPPING))
    assert [(r.key, r.segments, [p[0] for p in r.problems]) for r in records] == [
        ("x.parquet:0", (b"",), [MISSING_FIELD]), ("x.parquet:1", (b"",), [MISSING_FIELD]),
    ]


def test_rows_are_read_in_batches_across_row_groups(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet", {"text": [f"d{i}" for i in range(7)]}, row_group_size=3)
    assert [r["text"] for r in iter_rows(str(path), MAPPING, batch_rows=2)] == [f"d{i}".encode() for i in range(7)]


def test_a_file_that_is_not_parquet_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"^bad.parquet: Parquet file unreadable after row 0"):
        list(read_parquet(work_item(path, tmp_path), kind=KIND_TEXT, mapping=MAPPING))


def test_invalid_utf8_inside_a_list_column_passes_through(tmp_path: Path) -> None:
    texts = pa.array([b"fine", b"\xc3("], pa.binary()).view(pa.string())
    captions = pa.ListArray.from_arrays(pa.array([0, 2], pa.int32()), texts)  # list<string>
    path = write_parquet(tmp_path / "l.parquet", {"image": [b"I"], "captions": captions})
    [record] = read_parquet(work_item(path, tmp_path), kind=KIND_CAPTION, mapping=MAPPING)
    assert record.segments == (ImageRef(b"I"), b"fine", b"\xc3(")
