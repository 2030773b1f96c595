from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import zstandard

from formats.vl_text import parse_line, read_jsonl, read_txt
from schemas.vl import KIND_CAPTION, KIND_TEXT, UNREADABLE_RECORD, FieldMapping
from tests.formats.vl_fixtures import work_item
from transforms.vl_types import VLRecord

MAPPING = FieldMapping()
LINES = b'{"text": "first doc", "id": 1}\n\n{"text": "caf\xe9 \\u00e9"}\n   \n{"text": "last"}\n'


def _texts(path: Path, root: Path, mapping: FieldMapping = MAPPING) -> list[tuple[str, tuple, tuple]]:
    return [(r.key, r.segments, r.problems) for r in read_jsonl(work_item(path, root), kind=KIND_TEXT, mapping=mapping)]


EXPECTED = [
    ("{name}:0", (b"first doc",), ()),
    ("{name}:1", (b"caf\xe9 \xc3\xa9",), ()),  # the invalid byte kept; the JSON escape is UTF-8
    ("{name}:2", (b"last",), ()),
]


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("c4.jsonl", lambda b: b),
        ("c4.jsonl.gz", gzip.compress),
        ("c4.jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
    ],
)
def test_jsonl_plain_gzip_and_zstd_give_the_same_records(tmp_path: Path, name: str, compress) -> None:
    path = tmp_path / "text" / name
    path.parent.mkdir()
    path.write_bytes(compress(LINES))
    expected = [(k.format(name=f"text/{name}"), s, p) for k, s, p in EXPECTED]
    assert _texts(path, tmp_path) == expected


def test_a_line_that_is_not_json_is_a_record_with_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"text": "a"}\nnot json\n[1, 2]\n{"text": "b"}\n')
    records = list(read_jsonl(work_item(path, tmp_path), kind=KIND_TEXT, mapping=MAPPING))
    assert [(r.key, r.index_in_file, r.segments) for r in records] == [
        ("t.jsonl:0", 0, (b"a",)), ("t.jsonl:1", 1, ()), ("t.jsonl:2", 2, ()), ("t.jsonl:3", 3, (b"b",)),
    ]
    assert records[1].problems == (
        (UNREADABLE_RECORD, None, "t.jsonl: line of record 1 is not JSON (Expecting value: line 1 column 1 (char 0))"),
    )
    assert records[2].problems == ((UNREADABLE_RECORD, None, "t.jsonl: line of record 2 is a JSON list, not an object"),)


def test_parse_line() -> None:
    assert parse_line(b'{"a": "\xff"}') == {"a": "\udcff"}  # surrogateescape: the byte comes back
    assert parse_line(b"3") == "a JSON int, not an object"


def test_jsonl_mapping_reaches_other_fields_and_kinds(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_bytes(b'{"meta": {"title": "T"}, "content": "body", "key": "doc-1"}\n')
    oscar = MAPPING.replace({"text": ("meta.title", "content")})
    assert _texts(path, tmp_path, oscar) == [("doc-1", (b"T\n\nbody",), ())]


def test_a_broken_gzip_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress(LINES)[:-12])
    with pytest.raises(ValueError, match=r"^t.jsonl.gz: unreadable after record \d"):
        list(read_jsonl(work_item(path, tmp_path), kind=KIND_TEXT, mapping=MAPPING))


def test_a_txt_file_is_one_document_keyed_by_its_relative_name(tmp_path: Path) -> None:
    path = tmp_path / "books" / "a.txt"
    path.parent.mkdir()
    path.write_bytes(b"line one\n\nline \xff two\n")
    assert list(read_txt(work_item(path, tmp_path))) == [
        VLRecord(dataset="ds", task="ds", kind=KIND_TEXT, key="books/a.txt", source_file="books/a.txt",
                 index_in_file=0, work_item=3, segments=(b"line one\n\nline \xff two\n",)),
    ]
    with pytest.raises(ValueError, match="kind 'caption' cannot be read"):
        list(read_txt(work_item(path, tmp_path), kind=KIND_CAPTION))
