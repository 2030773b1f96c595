"""planning/vl_plan.py: `--fields` entries and spec files, which mapping wins (registry <
spec file < flags), where the files are looked for, the work items of each bundled
dataset, and the start-up refusals (no files of the format, images only as URLs)."""

from __future__ import annotations

import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from planning.options import SAMPLES_DATA_DIR
from planning.vl_plan import input_root, parse_field_overrides, plan_vl_work, read_vl_spec, resolve_mapping
from schemas.vl import (
    FORMAT_JSONL,
    FORMAT_PARQUET,
    FORMAT_TFDS,
    FORMAT_WEBDATASET,
    KIND_CAPTION,
    VQAV2,
    get_vl_dataset,
)

SAMPLES = pathlib.Path(SAMPLES_DATA_DIR)


def test_field_overrides_parse_names_and_alternatives() -> None:
    assert parse_field_overrides(["image=jpg", " captions = caption | text ", "key=__key__"]) == {
        "image": ("jpg",), "captions": ("caption", "text"), "key": ("__key__",),
    }
    assert parse_field_overrides([]) == {}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("image", r"--fields entry 'image': expected <part>=<name>\[\|<name>\.\.\.\]"),
        ("=jpg", r"--fields entry '=jpg': expected"),
        ("image= ", r"--fields entry 'image= ': expected"),
        ("picture=jpg", r"--fields entry 'picture=jpg': unknown part 'picture'; known: \['key', 'image'"),
    ],
)
def test_a_bad_field_override_is_refused_naming_the_entry(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_field_overrides([entry])


def _spec(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return str(path)


def test_a_spec_file_gives_its_format_and_fields(tmp_path: pathlib.Path) -> None:
    path = _spec(tmp_path, 'format = "webdataset"\n[fields]\nimage = "jpg"\ncaptions = ["txt", "caption"]\n')
    assert read_vl_spec(path) == ("webdataset", {"image": ("jpg",), "captions": ("txt", "caption")})
    assert read_vl_spec(_spec(tmp_path, "[fields]\nquestion = \"q\"\n")) == (None, {"question": ("q",)})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('format = "parquet"\ncolumns = 3\n', r"unknown keys \['columns'\]; known: \['fields', 'format'\]"),
        ("format = \n", r"cannot read it as TOML"),
        ('fields = "image"\n', r"\[fields\] must be a table"),
        ('[fields]\npicture = "jpg"\n', r"--fields entry 'picture=jpg': unknown part 'picture'"),
    ],
)
def test_a_bad_spec_file_is_refused_naming_the_file(tmp_path: pathlib.Path, text: str, message: str) -> None:
    path = _spec(tmp_path, text)
    with pytest.raises(ValueError, match=rf"--vl_spec={path}: .*{message}"):
        read_vl_spec(path)


def test_mapping_precedence_registry_then_spec_file_then_flags(tmp_path: pathlib.Path) -> None:
    assert resolve_mapping(VQAV2, format=None, fields=(), vl_spec=None) == (FORMAT_PARQUET, VQAV2.mapping)
    path = _spec(tmp_path, 'format = "jsonl"\n[fields]\nquestion = "q"\nanswer = "a"\n')
    chosen, mapping = resolve_mapping(VQAV2, format=None, fields=(), vl_spec=path)
    assert (chosen, mapping.question, mapping.answer, mapping.image) == (FORMAT_JSONL, ("q",), ("a",), ("image",))
    chosen, mapping = resolve_mapping(VQAV2, format=FORMAT_WEBDATASET, fields=["answer=ans"], vl_spec=path)
    assert (chosen, mapping.question, mapping.answer) == (FORMAT_WEBDATASET, ("q",), ("ans",))
    with pytest.raises(ValueError, match=r"--format=csv: unknown format; known: \["):
        resolve_mapping(VQAV2, format="csv", fields=(), vl_spec=None)


def test_input_root_is_the_datasets_subdir_when_present_else_the_data_dir(tmp_path: pathlib.Path) -> None:
    assert input_root(str(tmp_path), VQAV2) == str(tmp_path)
    (tmp_path / "vqav2").mkdir()
    assert input_root(str(tmp_path) + "/", VQAV2) == str(tmp_path / "vqav2")
    with pytest.raises(ValueError, match=r"data dir of dataset 'vqav2' does not exist: looked in .*/absent"):
        input_root(str(tmp_path / "absent"), VQAV2)


@pytest.mark.parametrize(
    ("dataset", "format", "files"),
    [
        ("coco_captions", FORMAT_TFDS, ["coco_captions/2014/1.1.0/coco_captions-train.tfrecord-00000-of-00001"]),
        ("conceptual_captions", FORMAT_WEBDATASET, ["conceptual_captions/00000.tar", "conceptual_captions/00001.tar"]),
        ("vqav2", FORMAT_PARQUET, ["vqav2/train-00000-of-00001.parquet"]),
        ("okvqa", FORMAT_PARQUET, ["okvqa/train-00000-of-00001.parquet"]),
        ("text", FORMAT_JSONL, ["text/c4-like-00000.jsonl.gz"]),
        ("interleaved", FORMAT_PARQUET, ["interleaved/train-00000-of-00001.parquet"]),
    ],
)
def test_each_bundled_dataset_plans_one_work_item_per_file(dataset: str, format: str, files: list[str]) -> None:
    plan = plan_vl_work(dataset, data_dir=SAMPLES_DATA_DIR)
    spec = get_vl_dataset(dataset)
    assert (plan.dataset, plan.format, plan.mapping, plan.tasks) == (spec, format, spec.mapping, [dataset])
    assert [item.shard_path for item in plan.work_items] == [f"{SAMPLES_DATA_DIR}/{f}" for f in files]
    assert [item.index for item in plan.work_items] == list(range(len(files)))
    assert {(item.dataset, item.task, item.data_root) for item in plan.work_items} == {
        (dataset, dataset, f"{SAMPLES_DATA_DIR}/{spec.data_subdir}")
    }


def test_coco_captions_work_item_expects_the_shards_record_count() -> None:
    (item,) = plan_vl_work("coco_captions", data_dir=SAMPLES_DATA_DIR).work_items
    assert item.builder_dir == f"{SAMPLES_DATA_DIR}/coco_captions/2014/1.1.0"
    assert item.expected_records == 12  # the sample's 12 images (samples/README.md)


def test_a_directory_without_files_of_the_format_is_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("not a tar")
    with pytest.raises(ValueError, match=rf"dataset 'conceptual_captions': no webdataset input files under {tmp_path}; "
                                         r"give --data_dir, or --format"):
        plan_vl_work("conceptual_captions", data_dir=str(tmp_path))


def test_a_parquet_of_image_urls_is_refused_at_start_up(tmp_path: pathlib.Path) -> None:
    table = pa.table({"image": ["https://example.com/a.jpg", "https://example.com/b.jpg"], "caption": ["a", "b"]})
    pq.write_table(table, tmp_path / "urls.parquet")
    assert get_vl_dataset("conceptual_captions").kind == KIND_CAPTION
    with pytest.raises(ValueError, match=r"dataset 'conceptual_captions': .*urls\.parquet: images are given only as "
                                         r"URLs .*'https://example\.com/a\.jpg'.*download the images first "
                                         r"\(e\.g\. with img2dataset"):
        plan_vl_work("conceptual_captions", data_dir=str(tmp_path), format=FORMAT_PARQUET)
