from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pytest

from formats.vl_read import find_url_only, read_records, vl_input_files
from schemas.vl import (
    COCO_CAPTIONS,
    FORMAT_JSONL,
    FORMAT_PARQUET,
    FORMAT_TFDS,
    FORMAT_TXT,
    FORMAT_WEBDATASET,
    KIND_CAPTION,
    KIND_INTERLEAVED,
    KIND_TEXT,
    FieldMapping,
)
from tests.formats.vl_fixtures import (
    SAMPLES,
    coco_example,
    hf_image_type,
    sample_records,
    work_item,
    write_caption_parquet,
    write_caption_tar,
    write_parquet,
    write_tar,
    write_tfrecord,
)

MAPPING = FieldMapping()


def _read(path: Path, root: Path, format: str) -> list:
    return list(read_records(work_item(path, root), kind=KIND_CAPTION, format=format, mapping=MAPPING))


def _without_source(records: list) -> list:
    return [dataclasses.replace(r, source_file="") for r in records]


def test_the_same_records_as_parquet_and_webdataset_are_equal_but_for_the_source(tmp_path: Path) -> None:
    from_parquet = _read(write_caption_parquet(tmp_path / "a.parquet"), tmp_path, FORMAT_PARQUET)
    from_tar = _read(write_caption_tar(tmp_path / "a.tar"), tmp_path, FORMAT_WEBDATASET)
    assert from_parquet == sample_records("a.parquet")
    assert _without_source(from_parquet) == _without_source(from_tar)
    assert [r.source_file for r in from_tar] == ["a.tar"] * 3


def test_captions_keyed_by_image_id_are_equal_in_all_three_formats(tmp_path: Path) -> None:
    """No key column: the image id is the key in HF Parquet and TFDS, the tar names samples by it."""
    parquet = write_parquet(tmp_path / "p.parquet", {
        "image_id": [i for i, _ in enumerate(SAMPLES)],
        "image": pa.array([{"bytes": img, "path": None} for _, img, _ in SAMPLES], hf_image_type()),
        "captions": [[c.decode() for c in caps] for _, _, caps in SAMPLES],
    })
    tar = write_tar(tmp_path / "w.tar", [m for i, (_, img, caps) in enumerate(SAMPLES)
                                         for m in ((f"{i}.png", img), (f"{i}.txt", caps[0]))])
    tfds = write_tfrecord(tmp_path / "t.tfrecord", [coco_example(i, img, caps) for i, (_, img, caps) in enumerate(SAMPLES)])
    results = [_without_source(_read(p, tmp_path, f)) for p, f in
               ((parquet, FORMAT_PARQUET), (tar, FORMAT_WEBDATASET), (tfds, FORMAT_TFDS))]
    assert [r.key for r in results[0]] == ["0", "1", "2"]
    assert results[0] == results[1] == results[2]


def test_read_records_dispatches_text_formats_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_bytes(b"doc")
    (tmp_path / "d.jsonl").write_bytes(b'{"text": "line"}\n')
    txt = read_records(work_item(tmp_path / "d.txt", tmp_path), kind=KIND_TEXT, format=FORMAT_TXT, mapping=MAPPING)
    jsonl = read_records(work_item(tmp_path / "d.jsonl", tmp_path), kind=KIND_TEXT, format=FORMAT_JSONL, mapping=MAPPING)
    assert [r.segments for r in (*txt, *jsonl)] == [(b"doc",), (b"line",)]
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        read_records(work_item(tmp_path / "d.txt", tmp_path), kind=KIND_TEXT, format="csv", mapping=MAPPING)


def _url_only(path: Path, format: str, kind: str = KIND_CAPTION, mapping: FieldMapping = MAPPING) -> str | None:
    return find_url_only(str(path), kind=kind, format=format, mapping=mapping)


def test_url_only_images_are_found_at_start_up(tmp_path: Path) -> None:
    url = "https://example.com/cat.jpg"
    strings = write_parquet(tmp_path / "s.parquet", {"image": [url], "caption": ["c"]})
    links = write_parquet(tmp_path / "l.parquet", {"url": [url], "caption": ["c"]})
    structs = write_parquet(tmp_path / "t.parquet", {
        "image": pa.array([{"bytes": None, "path": url}], hf_image_type()), "caption": ["c"]})
    obelics = write_parquet(tmp_path / "o.parquet", {"images": [[None, url]], "texts": [["t", None]]})
    tar = write_tar(tmp_path / "w.tar", [("0.json", json.dumps({"url": url, "caption": "c"}).encode()),
                                         ("0.txt", b"c")])
    jsonl = tmp_path / "j.jsonl"
    jsonl.write_text(json.dumps({"url": url, "caption": "c"}) + "\n")
    assert _url_only(strings, FORMAT_PARQUET) == (
        f"{strings}: images are given only as URLs (field 'image', e.g. '{url}'); a worker never touches the "
        "network: download the images first (e.g. with img2dataset, which writes WebDataset tars or Parquet "
        "with image bytes) and point the job at the result"
    )
    assert "(field 'url' and no image field ['image'], e.g. 'https://example.com/cat.jpg')" in _url_only(links, FORMAT_PARQUET)
    assert "(field 'image', e.g." in _url_only(structs, FORMAT_PARQUET)
    assert "(field 'images', e.g." in _url_only(obelics, FORMAT_PARQUET, KIND_INTERLEAVED)
    assert "(field 'url' and no image field ['jpg|jpeg|png|webp']" in _url_only(tar, FORMAT_WEBDATASET)
    assert "(field 'url' and no image field ['image']" in _url_only(jsonl, FORMAT_JSONL)


def test_downloaded_images_are_not_url_only(tmp_path: Path) -> None:
    assert _url_only(write_caption_parquet(tmp_path / "a.parquet"), FORMAT_PARQUET) is None
    assert _url_only(write_caption_tar(tmp_path / "a.tar"), FORMAT_WEBDATASET) is None  # .json has no url
    beside = write_tar(tmp_path / "b.tar", [("0.jpg", b"J"), ("0.json", b'{"url": "http://x/y.jpg"}')])
    assert _url_only(beside, FORMAT_WEBDATASET) is None
    img2dataset = write_parquet(tmp_path / "i.parquet", {"url": ["http://x/y.jpg"], "jpg": [b"J"]})
    assert _url_only(img2dataset, FORMAT_PARQUET) is None  # the bytes are there, under another name
    text = write_parquet(tmp_path / "t.parquet", {"text": ["http://x"]})
    assert _url_only(text, FORMAT_PARQUET, KIND_TEXT) is None
    assert _url_only(tmp_path / "none.tfrecord", FORMAT_TFDS, mapping=COCO_CAPTIONS.mapping) is None


def test_vl_input_files_are_found_recursively_and_sorted(tmp_path: Path) -> None:
    for name in ("b/2.jsonl.zst", "a.jsonl", "b/1.jsonl.gz", "b/notes.txt", "c.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    root = str(tmp_path)
    assert vl_input_files(root, format=FORMAT_JSONL) == [f"{root}/a.jsonl", f"{root}/b/1.jsonl.gz", f"{root}/b/2.jsonl.zst"]
    assert vl_input_files(root, format=FORMAT_TXT) == [f"{root}/b/notes.txt"]
    assert vl_input_files(f"{root}/a.jsonl", format=FORMAT_JSONL) == [f"{root}/a.jsonl"]
    assert vl_input_files(root, format=FORMAT_PARQUET) == []
    with pytest.raises(ValueError, match="dataset_info.json"):
        vl_input_files(root, format=FORMAT_TFDS)
