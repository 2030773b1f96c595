"""The vision-language benchmark: its images are photo-sized JPEGs, and a tiny run prints
every figure in the issue's line format."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from benchmarks.bench_vl import CAPTIONS, TEXT, make_data, photo_jpeg

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"-?[\d,.]+|inf|-inf"


def test_images_are_640x480_photo_sized_jpegs_and_deterministic() -> None:
    jpeg = photo_jpeg(3)
    with Image.open(io.BytesIO(jpeg)) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (640, 480), "RGB")
    # Real 640x480 photos at q90 are ~50-200 KB; the flat scene alone would be ~10 KB.
    assert 50_000 < len(jpeg) < 200_000
    assert photo_jpeg(3) == jpeg and photo_jpeg(4) != jpeg


def test_inputs_are_written_once_in_the_job_formats(tmp_path: Path) -> None:
    captions = make_data(tmp_path, CAPTIONS, 2)
    table = pq.read_table(next(captions.glob("*.parquet")))
    assert table.num_rows == 2 and table.column_names == ["image", "image_id", "captions"]
    assert [len(c) for c in table.column("captions").to_pylist()] == [5, 5]
    text = make_data(tmp_path, TEXT, 3)
    assert len((text / "c4-like-00000.jsonl").read_text().splitlines()) == 3
    marker = captions / "DONE"
    before = marker.stat().st_mtime_ns
    assert make_data(tmp_path, CAPTIONS, 2) == captions and marker.stat().st_mtime_ns == before


def test_quick_run_prints_every_figure(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_vl.py"), "--quick", "--repeat", "1",
         "--cache_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    n = rf"(?:{NUMBER})"
    for kind, unit in ((CAPTIONS, "pairs"), (TEXT, "tokens")):
        assert any(re.fullmatch(rf"{kind}: {unit}/s full {n}, floor {n}, full/floor {n}, fixed {n} s", line)
                   for line in lines), out.stdout
    assert any(re.fullmatch(rf"jpeg decode: pillow {n} ms, simplejpeg {n} ms, identical pixels: True", line)
               for line in lines), out.stdout
    assert any(line.startswith("  full job: 1 record ") and "4 records (20 pairs" in line for line in lines), out.stdout
    assert any(re.fullmatch(rf"  floor on 4 records: read {n} ms, decode\+resize\+crop {n} ms \(4 images\), "
                            rf"write {n} ms", line) for line in lines), out.stdout
