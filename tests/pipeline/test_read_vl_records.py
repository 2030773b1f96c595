"""pipeline/read_vl_records.py: a file's records in order; a file that breaks off ends in
one unreadable record (rejected downstream, so read = kept + rejected still holds)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counters import counter_name
from pipeline.read_vl_records import COUNTER_NAMESPACE, ReadVLRecords
from schemas.vl import FORMAT_WEBDATASET, KIND_CAPTION, UNREADABLE_RECORD, FieldMapping
from tests.pipeline.pipeline_fixtures import RUNNER, committed_counters
from transforms.episode import WorkItem


def _tar(path: Path, members: dict[str, bytes], *, cut: int | None = None) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    path.write_bytes(data if cut is None else data[:cut])


def _item(path: Path, index: int) -> WorkItem:
    return WorkItem(dataset="conceptual_captions", task="conceptual_captions", builder_dir=str(path.parent),
                    shard_path=str(path), index=index, data_root=str(path.parent))


def test_records_in_file_order_and_a_truncated_tar_ends_in_one_unreadable_record(tmp_path: Path) -> None:
    members = {"a.jpg": b"\xff\xd8a", "a.txt": b"first", "b.jpg": b"\xff\xd8b", "b.txt": b"second"}
    _tar(tmp_path / "0.tar", members)
    _tar(tmp_path / "1.tar", {**members, "c.jpg": b"x" * 4000, "c.txt": b"third"}, cut=6000)  # inside c.jpg
    p = TestPipeline(runner=RUNNER)
    records = p | beam.Create([_item(tmp_path / "0.tar", 0), _item(tmp_path / "1.tar", 1)]) | ReadVLRecords(
        kind=KIND_CAPTION, format=FORMAT_WEBDATASET, mapping=FieldMapping(), records_per_element=1
    )
    summary = records | beam.FlatMap(lambda one: one) | beam.Map(
        lambda r: (r.source_file, r.index_in_file, r.key, tuple(p[0] for p in r.problems))
    )
    assert_that(summary, equal_to([
        ("0.tar", 0, "a", ()), ("0.tar", 1, "b", ()),
        ("1.tar", 0, "a", ()), ("1.tar", 1, "b", ()), ("1.tar", 2, "1.tar:2", (UNREADABLE_RECORD,)),
    ]))
    result = p.run()
    result.wait_until_finish()
    task = ("conceptual_captions", "conceptual_captions")
    assert committed_counters(result, COUNTER_NAMESPACE) == {
        counter_name(task, "records"): 4, counter_name(task, "unreadable_files"): 1,
    }


def test_whole_files_give_one_tuple_per_file_in_file_order(tmp_path: Path) -> None:
    # Pairs are packed per file: their records travel as one element, not through a shuffle.
    _tar(tmp_path / "0.tar", {"a.jpg": b"\xff\xd8a", "a.txt": b"first", "b.jpg": b"\xff\xd8b", "b.txt": b"second"})
    _tar(tmp_path / "1.tar", {"c.jpg": b"\xff\xd8c", "c.txt": b"third"})
    with TestPipeline(runner=RUNNER) as p:
        files = p | beam.Create([_item(tmp_path / "0.tar", 0), _item(tmp_path / "1.tar", 1)]) | ReadVLRecords(
            kind=KIND_CAPTION, format=FORMAT_WEBDATASET, mapping=FieldMapping(), records_per_element=None
        )
        keys = files | beam.Map(lambda records: tuple(r.key for r in records))
        assert_that(keys, equal_to([("a", "b"), ("c",)]))


def test_documents_travel_a_bounded_number_at_a_time_in_file_order(tmp_path: Path) -> None:
    members = {f"{k}.jpg" if i % 2 == 0 else f"{k}.txt": b"x" for k in "abcde" for i in range(2)}
    _tar(tmp_path / "0.tar", members)
    with TestPipeline(runner=RUNNER) as p:
        chunks = p | beam.Create([_item(tmp_path / "0.tar", 0)]) | ReadVLRecords(
            kind=KIND_CAPTION, format=FORMAT_WEBDATASET, mapping=FieldMapping(), records_per_element=2
        )
        keys = chunks | beam.Map(lambda records: tuple(r.key for r in records))
        assert_that(keys, equal_to([("a", "b"), ("c", "d"), ("e",)]))
