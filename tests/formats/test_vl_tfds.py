from __future__ import annotations

from pathlib import Path

import pytest

from formats.vl_tfds import example_row, read_tfds, tfds_row
from schemas.vl import COCO_CAPTIONS, KIND_CAPTION, KIND_VQA, UNREADABLE_RECORD
from tests.formats.vl_fixtures import coco_example, work_item, write_tfrecord
from transforms.vl_types import ImageRef, VLRecord

MAPPING = COCO_CAPTIONS.mapping
SHARD = "coco_captions/2017/1.1.0/coco_captions-train.tfrecord-00000-of-00001"


def test_example_row_reads_only_the_asked_features() -> None:
    record = coco_example(9, b"JPEG", [b"a", b"b"])
    assert example_row(record, {"image/id", "captions/text"}) == {"image/id": [9], "captions/text": [b"a", b"b"]}
    with pytest.raises(ValueError, match="not a tf.train.Example"):
        example_row(b"\xff\xff\xff", {"image"})


def test_tfds_row_nests_captions_and_unwraps_scalars() -> None:
    flat = {"image": [b"J"], "image/id": [9], "captions/text": [b"a"], "captions/id": [0]}
    assert tfds_row(flat, MAPPING) == {"image": b"J", "image/id": 9, "captions": [b"a"]}


def test_coco_captions_records_keyed_by_image_id(tmp_path: Path) -> None:
    path = write_tfrecord(tmp_path / SHARD, [
        coco_example(139, b"JPEG139", [b"a man", b"a man on a horse"]),
        coco_example(285, b"JPEG285", [b"a bear \xff"]),
    ])
    records = list(read_tfds(work_item(path, tmp_path, expected=2), kind=KIND_CAPTION, mapping=MAPPING))
    assert records == [
        VLRecord(dataset="ds", task="ds", kind=KIND_CAPTION, key="139", source_file=SHARD, index_in_file=0,
                 work_item=3, segments=(ImageRef(b"JPEG139"), b"a man", b"a man on a horse")),
        VLRecord(dataset="ds", task="ds", kind=KIND_CAPTION, key="285", source_file=SHARD, index_in_file=1,
                 work_item=3, segments=(ImageRef(b"JPEG285"), b"a bear \xff")),
    ]


def test_unparsable_corrupt_and_missing_records_are_records_with_problems(tmp_path: Path) -> None:
    path = write_tfrecord(tmp_path / "s.tfrecord", [coco_example(1, b"J", [b"c"]), b"\xff\xff\xff"])
    data = path.read_bytes()
    path.write_bytes(data + data[:20])  # a third record cut short: the framing is lost
    records = list(read_tfds(work_item(path, tmp_path, expected=4), kind=KIND_CAPTION, mapping=MAPPING))
    assert [(r.key, r.segments, [p[0] for p in r.problems]) for r in records] == [
        ("1", (ImageRef(b"J"), b"c"), []),
        ("s.tfrecord:1", (), [UNREADABLE_RECORD]),
        ("s.tfrecord:2", (), [UNREADABLE_RECORD]),
        ("s.tfrecord:3", (), [UNREADABLE_RECORD]),
    ]
    assert records[2].problems[0][2].startswith("s.tfrecord: record 2: truncated record at ")
    assert records[3].problems[0][2] == (
        "s.tfrecord: record 3 not in the file: dataset_info.json promises 4, its framing was lost at record 2"
    )


def test_only_captions_are_read_from_tfds(tmp_path: Path) -> None:
    path = write_tfrecord(tmp_path / "s.tfrecord", [])
    with pytest.raises(ValueError, match="not kind 'vqa'"):
        list(read_tfds(work_item(path, tmp_path), kind=KIND_VQA, mapping=MAPPING))
