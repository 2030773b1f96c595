"""The vision-language job through the real command line, `beam_runner.main([...])`, end to end.

What a data engineer sees (issue 15, "Done when"): every registry dataset runs on the bundled
samples with read = kept + rejected; the same COCO records as TFDS, HF Parquet and WebDataset
give the same rows and shard digests; each kind of bad input becomes a reject with its reason
(or a one-line error under --strict); an image given only as a URL stops the job at start-up;
a rerun writes the same bytes. The job runs in this process (DirectRunner), so each run is a
call, not a subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import beam_runner
from schemas.output import MANIFEST_FILE, REASON, REJECTS_DIR, S_PATH, S_SHA256, SEQUENCES_DIR, SOURCE_KEYS
from schemas.vl import CORRUPT_IMAGE, EMPTY_TEXT, INVALID_UTF8, MISSING_IMAGE, VL_REGISTRY

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "data"
# The same 12 COCO records in the three caption formats (samples/README.md).
COCO_FORMATS = {
    "tfds": [f"--data_dir={SAMPLES}"],
    "parquet": ["--format=parquet", f"--data_dir={SAMPLES / 'coco_captions_parquet'}"],
    "webdataset": ["--format=webdataset", "--fields=captions=json.captions",
                   f"--data_dir={SAMPLES / 'coco_captions_wds'}"],
}
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def run(dataset: str, out: Path, *args: str) -> int:
    return beam_runner.main([f"--dataset={dataset}", f"--output_dir={out}", "--log_level=WARNING", *args])


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / MANIFEST_FILE).read_text())


def task_stats(out: Path) -> dict[str, Any]:
    (record,) = json.loads((out / "stats" / "stats.json").read_text())["tasks"]
    return record


def sequences(out: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((out / SEQUENCES_DIR).rglob("*.parquet")))


def tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# --- Every registry dataset runs on the bundled samples with no other argument. ---


@pytest.mark.parametrize("dataset", sorted(VL_REGISTRY))
def test_every_vl_dataset_runs_on_the_samples(dataset: str, tmp_path: Path) -> None:
    assert run(dataset, tmp_path / "out") == 0
    stats = task_stats(tmp_path / "out")
    assert (stats["dataset"], stats["task"]) == (dataset, dataset)
    assert stats["records_read"] == stats["records_kept"] + stats["records_rejected"] > 0
    assert stats["records_rejected"] == 0  # the samples are clean
    shards = manifest(tmp_path / "out")["shards"]
    assert sum(s["rows"] for s in shards) == stats["rows"] == sequences(tmp_path / "out").num_rows > 0


# --- The same records in three formats: the same rows, the same shard bytes. ---


@pytest.fixture(scope="module")
def coco_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("coco")
    for name, args in COCO_FORMATS.items():
        assert run("coco_captions", root / name, *args) == 0, name
    return {name: root / name for name in COCO_FORMATS}


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_coco_as_parquet_or_webdataset_gives_the_tfds_rows(coco_outputs: dict[str, Path], fmt: str) -> None:
    tfds = sequences(coco_outputs["tfds"])
    assert tfds.num_rows == 12  # 12 records of 5 captions: 60 pairs, 5 to a row
    assert sequences(coco_outputs[fmt]).equals(tfds)
    digests = {name: [(s[S_PATH], s[S_SHA256]) for s in manifest(out)["shards"]] for name, out in coco_outputs.items()}
    assert digests[fmt] == digests["tfds"]


def test_a_rerun_into_a_new_directory_is_byte_identical(coco_outputs: dict[str, Path], tmp_path: Path) -> None:
    assert run("coco_captions", tmp_path / "again", *COCO_FORMATS["tfds"]) == 0
    first, again = tree(coco_outputs["tfds"]), tree(tmp_path / "again")
    assert MANIFEST_FILE in first and "report.html" in first
    assert sorted(again) == sorted(first)
    assert [path for path in first if first[path] != again[path]] == []


# --- Bad input: a reject with its reason per record, or one line under --strict. ---


def write_bad_captions(directory: Path) -> Path:
    """Four records: `good` (a caption and a blank one), `corrupt` (not a JPEG), `missing`
    (no bytes, its path absent next to the file) and `badutf8` (its only caption not UTF-8).
    Captions are list<binary>, so invalid UTF-8 can be written at all."""
    jpeg = pq.read_table(SAMPLES / "coco_captions_parquet" / "train-00000-of-00001.parquet").column("image")[0]
    jpeg_bytes = jpeg.as_py()["bytes"]
    table = pa.table({
        "key": ["good", "corrupt", "missing", "badutf8"],
        "image": pa.array([
            {"bytes": jpeg_bytes, "path": "a.jpg"},
            {"bytes": b"\xff\xd8\xff not a jpeg", "path": "b.jpg"},
            {"bytes": None, "path": "absent.jpg"},
            {"bytes": jpeg_bytes, "path": "d.jpg"},
        ], IMAGE_TYPE),
        "captions": pa.array(
            [[b"A blue triangle.", b"  \t"], [b"A corrupt image."], [b"A missing image."], [b"bad \xff\xfe text"]],
            pa.list_(pa.binary()),
        ),
    })
    directory.mkdir()
    path = directory / "train-00000-of-00001.parquet"
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def bad_captions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bad_captions(tmp_path_factory.mktemp("bad") / "data")


def test_bad_records_go_to_rejects_with_their_reasons(bad_captions: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("coco_captions", out, "--format=parquet", f"--data_dir={bad_captions.parent}") == 0
    rejects = pa.concat_tables(pq.read_table(p) for p in sorted((out / REJECTS_DIR).rglob("*.parquet")))
    got = sorted((r["episode_id"], r[REASON], r["field"], r["source_file"]) for r in rejects.to_pylist())
    assert got == [
        ("badutf8", INVALID_UTF8, "captions", bad_captions.name),
        ("corrupt", CORRUPT_IMAGE, "image", bad_captions.name),
        ("good", EMPTY_TEXT, "captions", bad_captions.name),  # the blank caption's pair alone
        ("missing", MISSING_IMAGE, "image", bad_captions.name),
    ]
    stats = task_stats(out)
    assert (stats["records_read"], stats["records_kept"], stats["records_rejected"]) == (4, 1, 3)
    assert stats["rejected_by_reason"] == {CORRUPT_IMAGE: 1, INVALID_UTF8: 1, MISSING_IMAGE: 1}
    assert stats["units_rejected_by_reason"] == {EMPTY_TEXT: 1}
    rows = sequences(out)
    assert (rows.num_rows, stats["units"]) == (1, 1)  # `good`'s one non-blank caption
    assert rows.column(SOURCE_KEYS).to_pylist() == [["good#0"]]  # key#caption index


def test_strict_stops_at_the_first_bad_record_in_one_line(
    bad_captions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run("coco_captions", tmp_path / "out", "--format=parquet", f"--data_dir={bad_captions.parent}", "--strict")
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert bad_captions.name in err and "record" in err and "Traceback" not in err
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


# --- An image given only as a URL: refused before any work, nothing written. ---


def test_url_only_images_stop_the_job_at_start_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({
        "key": ["a", "b"],
        "image": ["https://example.com/a.jpg", "https://example.com/b.jpg"],
        "captions": [["A picture."], ["Another."]],
    }), data / "train-00000-of-00001.parquet")
    out = tmp_path / "out"
    code = run("coco_captions", out, "--format=parquet", f"--data_dir={data}")
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "https://example.com/a.jpg" in err and "download" in err
    assert not out.exists()
