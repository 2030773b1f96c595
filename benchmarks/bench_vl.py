"""Vision-language and text job speed against its floor (issue 15, item 6 "Speed").

    python benchmarks/bench_vl.py              # the suite (~2-3 min on 2 loaded cores)
    python benchmarks/bench_vl.py --quick      # tiny sizes, a smoke run, figures meaningless

Makes inputs once under --cache_dir, then measures, each run in its own process on the
DirectRunner with one worker (the floor runs in one process too), wall time from
planning to the end of the pipeline with imports done first, as `bench_pipeline.py` does:

- captions: COCO-like HF Parquet (`image` struct{bytes, path}, five `captions` structs
  per image), 640x480 JPEG q90 images: a rendered scene (`samples/vl_scenes.py`) scaled
  up, with texture and noise so the JPEGs are photo-sized (~100 KB), not flat (~10 KB);
- text: C4-like JSONL documents of lines of `samples/text/corpus.txt`.

For each: the full job (`pipeline.job.run_job`) on one record (fixed cost) and at two
sizes 8x apart; full rate = 1 / the slope between the two sizes (pairs, or output text
tokens); floor rate, on the large size's records, = records / (read + decode + write):
read = the input file read whole by pyarrow (Parquet) or line by line as JSON (JSONL);
decode = `transforms.vl_image.decode_rgb` of every image (the job's pixel-identical
fastest decoder, resize and crop to S); write = the job's own sequence tables read back
and written again with `ShardWriter` and the job's `WriteOptions`. Each measurement runs
--repeat times and the fastest counts (other work only slows a run down).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: `benchmarks` is not an installed package
    sys.path.insert(0, str(_ROOT))

from benchmarks.timing import best_seconds  # noqa: E402

RESULT_PREFIX = "BENCH_RESULT "
TARGET_FULL_OVER_FLOOR = 0.6
CAPTIONS, TEXT = "vl_captions", "vl_text"
DATASETS = {CAPTIONS: "coco_captions", TEXT: "text"}
IMAGE_SIZE = (640, 480)
JPEG_QUALITY = 90
CAPTIONS_PER_IMAGE = 5
LINES_PER_DOCUMENT = 120  # ~2,000 tokens of the bundled text model per document
CORPUS = _ROOT / "samples" / "text" / "corpus.txt"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Records (images, documents) of each kind at the small and large size (8x apart)."""

    captions: tuple[int, int]
    text: tuple[int, int]


# Text runs 8x larger: its 128 documents took ~0.3 s, within the noise of the fixed cost.
FULL_SIZES = Sizes(captions=(16, 128), text=(128, 1024))
QUICK_SIZES = Sizes(captions=(2, 4), text=(2, 4))


# --- Inputs --------------------------------------------------------------------------------


def photo_jpeg(index: int) -> bytes:
    """A 640x480 JPEG q90 of photo-like size: scene `index` scaled up, a lighting gradient,
    and pixel noise (seeded from a stable hash of the index)."""
    import numpy as np
    from PIL import Image

    from samples import vl_scenes
    from transforms.hashing import stable_hash

    scene = vl_scenes.make_scene(0, DATASETS[CAPTIONS], index)
    base = np.asarray(vl_scenes.render(scene).resize(IMAGE_SIZE, Image.Resampling.BILINEAR), dtype=np.float32)
    rng = np.random.default_rng(stable_hash("bench_vl", "photo", index))
    width, height = IMAGE_SIZE
    light = np.linspace(-30, 30, width, dtype=np.float32)[None, :, None] * rng.uniform(-1, 1)
    pixels = base + light + rng.normal(0, 10, (height, width, 3)).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def caption_texts(index: int) -> list[str]:
    from samples import vl_scenes

    texts = vl_scenes.captions(vl_scenes.make_scene(0, DATASETS[CAPTIONS], index))
    return (texts * CAPTIONS_PER_IMAGE)[:CAPTIONS_PER_IMAGE]


def write_captions(data_dir: Path, images: int) -> None:
    """`images` COCO-like records as one HF Parquet file (samples/vl_files.py's writer)."""
    import pyarrow as pa

    from samples.vl_files import HF_IMAGE, IMAGE_TYPE, PARQUET_SHARD, hf_list, hf_value, write_parquet

    caption_type = pa.list_(pa.struct([("id", pa.int64()), ("text", pa.string())]))
    write_parquet(data_dir / PARQUET_SHARD, {
        "image": (IMAGE_TYPE, [{"bytes": photo_jpeg(i), "path": f"{i:012d}.jpg"} for i in range(images)]),
        "image_id": (pa.int64(), list(range(images))),
        "captions": (caption_type, [[{"id": i * 10 + j, "text": t} for j, t in enumerate(caption_texts(i))]
                                    for i in range(images)]),
    }, {"image": HF_IMAGE, "image_id": hf_value("int64"),
        "captions": hf_list({"id": hf_value("int64"), "text": hf_value("string")})})


def write_text(data_dir: Path, documents: int) -> None:
    """`documents` C4-like JSONL records, each LINES_PER_DOCUMENT corpus lines picked by hash."""
    from transforms.hashing import stable_randrange

    lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(data_dir / "c4-like-00000.jsonl", "w", encoding="utf-8") as f:
        for d in range(documents):
            picked = (lines[stable_randrange(len(lines), "bench_vl", d, i)] for i in range(LINES_PER_DOCUMENT))
            f.write(json.dumps({"text": "\n".join(f"{line}." for line in picked), "url": f"doc-{d}"}) + "\n")


def make_data(cache_dir: Path, kind: str, records: int) -> Path:
    """The input directory of `records` records of `kind`, written once (a DONE marker)."""
    data_dir = cache_dir / "data" / f"{kind}-{records}"
    if not (data_dir / "DONE").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        (write_captions if kind == CAPTIONS else write_text)(data_dir, records)
        (data_dir / "DONE").write_text("")
    return data_dir


# --- One measured run (in a child process) --------------------------------------------------


def _options(kind: str, data_dir: str, output_dir: str) -> Any:
    from planning.options import JobOptions

    return JobOptions(dataset=DATASETS[kind], format="parquet" if kind == CAPTIONS else "jsonl",
                      data_dir=data_dir, output_dir=output_dir, overwrite=True)


def run_full(kind: str, data_dir: str, output_dir: str, beam_args: Sequence[str]) -> dict[str, Any]:
    """The whole job via `run_job`; returns records, pairs (units) and output tokens."""
    from pipeline.job import run_job
    from schemas import output as out

    summary = run_job(_options(kind, data_dir, output_dir), beam_args=beam_args)
    shards = json.loads((Path(output_dir) / out.MANIFEST_FILE).read_text())[out.M_SHARDS]
    return {
        "records": sum(v.get("vl_read.records", 0) for v in summary.values()),
        "pairs": sum(v.get("vl_tokenize.units", 0) for v in summary.values()),
        "tokens": sum(s[out.S_TOKENS] for s in shards),
        "rows": sum(s[out.S_ROWS] for s in shards),
    }


def _rewrite(tables: list[Any], *, dataset: str, rows_per_shard: int) -> None:
    from formats.parquet_shards import ShardWriter, WriteOptions

    with tempfile.TemporaryDirectory() as tmp:
        for i, table in enumerate(tables):
            writer = ShardWriter(kind="sequences", dataset=dataset, task="floor", work_item=i, schema=table.schema,
                                 options=WriteOptions(output_dir=tmp, rows_per_shard=rows_per_shard), attempt="floor")
            for batch in table.to_batches(max_chunksize=64):
                writer.write(batch)
            writer.close()


def _jpegs(parquet_path: Path) -> list[bytes]:
    import pyarrow.parquet as pq

    return [image["bytes"] for image in pq.read_table(parquet_path, columns=["image"]).column("image").to_pylist()]


def _tokenize_seconds(kind: str, path: Path) -> float:
    """SentencePiece alone on the documents' text (not in the floor: a detail, to show how
    much of the text job's cost is the tokenizer itself); 0 for captions."""
    if kind != TEXT:
        return 0.0
    from planning.text_model import DEFAULT_SENTENCEPIECE_MODEL
    from transforms.text import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer.from_path(DEFAULT_SENTENCEPIECE_MODEL)
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    return best_seconds(lambda: [tokenizer.encode_batch([t]) for t in texts])  # one call a document, as the job


def run_floor(kind: str, data_dir: str, job_output: str) -> dict[str, Any]:
    """The floor's parts on the records of `data_dir` (module doc), each the fastest of 3."""
    import pyarrow.parquet as pq

    from transforms.vl_image import decode_rgb

    options = _options(kind, data_dir, job_output)
    [path] = [p for p in Path(data_dir).iterdir() if p.suffix in (".parquet", ".jsonl")]
    if kind == CAPTIONS:
        def read() -> None:
            pq.read_table(path)
    else:
        def read() -> None:
            with open(path, "rb") as f:
                [json.loads(line) for line in f]
    images = _jpegs(path) if kind == CAPTIONS else []
    tables = [pq.read_table(p) for p in sorted(Path(job_output, "sequences").rglob("*.parquet"))]
    return {
        "tokenize": _tokenize_seconds(kind, path),
        "read": best_seconds(read),
        "decode": best_seconds(lambda: [decode_rgb(b, size=options.image_size) for b in images]) if images else 0.0,
        "write": best_seconds(lambda: _rewrite(tables, dataset=options.dataset, rows_per_shard=options.rows_per_shard)),
        "images": len(images),
    }


def compare_decoders(parquet_path: Path) -> dict[str, Any]:
    """ms per image of a full RGB decode by Pillow and by simplejpeg, and whether every
    image's pixels are identical."""
    import numpy as np
    import simplejpeg
    from PIL import Image

    images = _jpegs(parquet_path)

    def pillow(b: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(b)) as opened:
            return np.asarray(opened.convert("RGB"))

    def fast(b: bytes) -> np.ndarray:
        return simplejpeg.decode_jpeg(b, colorspace="RGB", strict=True)

    identical = all(np.array_equal(pillow(b), fast(b)) for b in images)
    return {"pillow_ms": best_seconds(lambda: [pillow(b) for b in images]) / len(images) * 1e3,
            "simplejpeg_ms": best_seconds(lambda: [fast(b) for b in images]) / len(images) * 1e3,
            "identical": identical, "jpeg_bytes": sum(map(len, images)) / len(images)}


def _child(spec: dict[str, Any]) -> None:
    # Imports are not the job's time, as in bench_pipeline.py.
    import pipeline.job  # noqa: F401
    import pipeline.vl_passes  # noqa: F401

    started = time.perf_counter()
    if spec["mode"] == "floor":
        result = run_floor(spec["kind"], spec["data_dir"], spec["output_dir"])
    elif spec["mode"] == "decoders":
        result = compare_decoders(next(Path(spec["data_dir"]).glob("*.parquet")))
    else:
        result = run_full(spec["kind"], spec["data_dir"], spec["output_dir"], spec["beam_args"])
    result["seconds"] = time.perf_counter() - started
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# --- The suite (parent process) -------------------------------------------------------------


def measure(mode: str, kind: str, data_dir: Path, output_dir: Path, *, repeat: int = 1) -> dict[str, Any]:
    """Runs one configuration `repeat` times, each in a child process; the fastest run."""
    spec = {"mode": mode, "kind": kind, "data_dir": str(data_dir), "output_dir": str(output_dir),
            "beam_args": ["--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]}
    runs = []
    for _ in range(repeat):
        child = subprocess.run([sys.executable, __file__, "--_child", json.dumps(spec)], capture_output=True,
                               text=True, cwd=_ROOT, env={**os.environ, "PYTHONPATH": str(_ROOT)})
        results = [line for line in child.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if child.returncode != 0 or not results:
            raise RuntimeError(f"{mode} {kind} {data_dir.name} failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
        runs.append(json.loads(results[-1][len(RESULT_PREFIX):]))
    return min(runs, key=lambda r: r["seconds"])


def bench_kind(kind: str, sizes: tuple[int, int], *, cache_dir: Path, repeat: int) -> list[str]:
    """The kind's report lines: the headline (`<kind>: <unit>/s full ...`), then details."""
    small_n, large_n = sizes
    runs = cache_dir / "runs"
    one, small, large = (measure("full", kind, make_data(cache_dir, kind, n), runs / f"{kind}-{n}", repeat=repeat)
                         for n in (1, small_n, large_n))
    floor = measure("floor", kind, make_data(cache_dir, kind, large_n), runs / f"{kind}-{large_n}")
    unit, count = ("pairs", "pairs") if kind == CAPTIONS else ("tokens", "tokens")
    # The slope's inverse; negative when noise beats the difference (tiny --quick sizes).
    span = large["seconds"] - small["seconds"]
    full_rate = (large[count] - small[count]) / span if span else float("inf")
    floor_seconds = floor["read"] + floor["decode"] + floor["write"]
    floor_rate = large[count] / floor_seconds
    ratio = full_rate / floor_rate
    lines = [
        f"{kind}: {unit}/s full {full_rate:,.0f}, floor {floor_rate:,.0f}, full/floor {ratio:.2f}, "
        f"fixed {one['seconds']:.1f} s",
        f"  full job: 1 record {one['seconds']:.2f} s; {small['records']} records ({small[count]:,} {unit}) "
        f"{small['seconds']:.2f} s; {large['records']} records ({large[count]:,} {unit}, {large['rows']:,} rows) "
        f"{large['seconds']:.2f} s",
        f"  floor on {large['records']} records: read {floor['read'] * 1e3:.1f} ms, decode+resize+crop "
        f"{floor['decode'] * 1e3:.1f} ms ({floor['images']} images), write {floor['write'] * 1e3:.1f} ms"
        + (f"; not in it: SentencePiece alone {floor['tokenize'] * 1e3:.1f} ms" if kind == TEXT else ""),
        f"  full/floor: {ratio:.2f} (target >= {TARGET_FULL_OVER_FLOOR}) "
        f"{'OK' if ratio >= TARGET_FULL_OVER_FLOOR else 'MISSED'}",
    ]
    if kind == CAPTIONS:
        d = measure("decoders", kind, make_data(cache_dir, kind, large_n), runs / "decoders")
        lines.append(f"jpeg decode: pillow {d['pillow_ms']:.2f} ms, simplejpeg {d['simplejpeg_ms']:.2f} ms, "
                     f"identical pixels: {d['identical']}")
        lines.append(f"  per {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG q{JPEG_QUALITY} image, mean "
                     f"{d['jpeg_bytes'] / 1024:.0f} KiB, {d['pillow_ms'] / d['simplejpeg_ms']:.2f}x")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache_dir", default=str(_ROOT / "bench_out" / "vl"), help="inputs and run outputs")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, figures meaningless")
    p.add_argument("--kinds", default=f"{CAPTIONS},{TEXT}", help="comma-separated: vl_captions, vl_text")
    p.add_argument("--repeat", type=int, default=2, help="runs per full-job measurement; the fastest counts")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        _child(json.loads(args._child))
        return 0
    started = time.perf_counter()
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load}; DirectRunner, 1 worker; "
          f"python {sys.version.split()[0]}", flush=True)
    for kind in (k for k in args.kinds.split(",") if k):
        if kind not in DATASETS:
            raise SystemExit(f"--kinds: unknown kind {kind!r}; known: {list(DATASETS)}")
        for line in bench_kind(kind, sizes.captions if kind == CAPTIONS else sizes.text,
                               cache_dir=Path(args.cache_dir), repeat=max(1, args.repeat)):
            print(line, flush=True)
    print(f"suite: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
