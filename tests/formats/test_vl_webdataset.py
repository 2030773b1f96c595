from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from formats.vl_webdataset import IMAGE_PART, iter_samples, read_webdataset, split_member, wds_mapping
from schemas.vl import KIND_CAPTION, KIND_VQA, MISSING_FIELD, MISSING_IMAGE, UNREADABLE_RECORD, FieldMapping
from tests.formats.vl_fixtures import SAMPLES, sample_records, work_item, write_caption_tar, write_tar
from transforms.vl_types import ImageRef

MAPPING = FieldMapping()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("000.jpg", ("000", "jpg")),
        ("part.v1/000.seg.JSON", ("part.v1/000", "seg.json")),
        ("dir/sub/k.txt", ("dir/sub/k", "txt")),
        ("noext", None),
        ("dir/.hidden", None),
    ],
)
def test_split_member_keeps_directories_and_cuts_at_the_first_dot(name: str, expected: object) -> None:
    assert split_member(name) == expected


def test_wds_mapping_reads_members_where_the_mapping_keeps_the_defaults() -> None:
    assert (wds_mapping(MAPPING).image, wds_mapping(MAPPING).captions) == ((IMAGE_PART,), ("txt",))
    custom = MAPPING.replace({"captions": "json.caption"})
    assert wds_mapping(custom).captions == ("json.caption",)


def test_caption_samples_in_tar_order(tmp_path: Path) -> None:
    path = write_caption_tar(tmp_path / "cc" / "00000.tar")
    records = list(read_webdataset(work_item(path, tmp_path), kind=KIND_CAPTION, mapping=MAPPING))
    assert records == sample_records("cc/00000.tar")


def test_missing_image_and_missing_caption(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "s.tar", [
        ("a.txt", b"no image here"), ("a.json", b"{}"),
        ("b.webp", b"WEBP"),
        ("c.JPEG", b"J"), ("c.txt", b"bad \xff utf8"), ("c.cls", b"3"),
    ])
    records = list(read_webdataset(work_item(path, tmp_path), kind=KIND_CAPTION, mapping=MAPPING))
    assert [(r.key, r.segments, r.problems) for r in records] == [
        ("a", (ImageRef(None, problem=MISSING_IMAGE, detail="none of the fields ['jpg|jpeg|png|webp'] in the record"),
               b"no image here"), ()),
        ("b", (ImageRef(b"WEBP"),), ((MISSING_FIELD, "txt", "none of the fields ['txt'] in the record"),)),
        ("c", (ImageRef(b"J"), b"bad \xff utf8"), ()),
    ]


def test_vqa_from_the_json_member(tmp_path: Path) -> None:
    meta = [
        {"question": "What is it?", "answer": "a cat"},
        {"question": "How many?", "answers": ["2", "two", "two", "2"]},
        {"question": "Colour?"},
    ]
    members = []
    for i, m in enumerate(meta):
        members += [(f"{i}.jpg", b"J%d" % i), (f"{i}.json", json.dumps(m).encode())]
    path = write_tar(tmp_path / "vqa.tar", members)
    records = list(read_webdataset(work_item(path, tmp_path), kind=KIND_VQA, mapping=MAPPING))
    assert [(r.key, r.segments) for r in records] == [
        ("0", (ImageRef(b"J0"), b"What is it?", b"a cat")),
        ("1", (ImageRef(b"J1"), b"How many?", b"2")),  # a tie: the first in the list
        ("2", (ImageRef(b"J2"), b"Colour?", b"")),
    ]
    assert records[2].problems == (
        (MISSING_FIELD, "multiple_choice_answer", "no answer in the fields ['multiple_choice_answer', 'answer', 'answers']"),
    )


def test_a_json_member_that_is_not_an_object_is_a_problem(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "s.tar", [("k.jpg", b"J"), ("k.txt", b"cap"), ("k.json", b"[1")])
    [record] = read_webdataset(work_item(path, tmp_path), kind=KIND_CAPTION, mapping=MAPPING)
    assert record.segments == (ImageRef(b"J"), b"cap")
    assert [p[:2] for p in record.problems] == [(UNREADABLE_RECORD, "json")]


def test_a_compressed_shard_is_streamed_too(tmp_path: Path) -> None:
    plain = write_caption_tar(tmp_path / "p.tar")
    packed = tmp_path / "p.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert [k for k, _ in iter_samples(str(packed), source_file="p.tar.gz")] == [k for k, _, _ in SAMPLES]


def test_a_truncated_tar_raises_naming_the_file_and_the_broken_member(tmp_path: Path) -> None:
    path = write_caption_tar(tmp_path / "t.tar")
    data = path.read_bytes()
    path.write_bytes(data[: 512 * 9 + 5])  # inside the data of `000000001.txt` (14 bytes)
    read = []
    with pytest.raises(ValueError, match=r"^t.tar: broken tar in member '000000001.txt'"):
        for record in read_webdataset(work_item(path, tmp_path), kind=KIND_CAPTION, mapping=MAPPING):
            read.append(record.key)
    assert read == ["000000000"]


def test_a_key_that_comes_back_raises(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "r.tar", [("a.jpg", b"J"), ("b.jpg", b"J"), ("a.txt", b"late")])
    with pytest.raises(ValueError, match=r"^r.tar: member 'a.txt': sample 'a' comes back after other samples"):
        list(iter_samples(str(path), source_file="r.tar"))


def test_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match=r"^x.tar: "):
        list(iter_samples(str(path), source_file="x.tar"))
