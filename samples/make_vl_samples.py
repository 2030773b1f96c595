"""Write the bundled vision-language and text samples, in the public on-disk layouts.

    python samples/make_vl_samples.py --out samples/data [--only coco_captions,text,...] [--seed 0]

Images are rendered scenes (`samples/vl_scenes.py`); captions and question/answer pairs
are derived from what was drawn; text documents are built from `samples/text/corpus.txt`.
One directory per registry entry (`schemas/vl.py`, `data_subdir`), plus the COCO records
again as HF Parquet and as a WebDataset tar so that readers can be checked to give the
same rows from each format. Needs Pillow and pyarrow; the TFDS `coco_captions` copy also
needs TensorFlow (the `tfds-write` extra). Nothing is downloaded.

Determinism: all choices are stable hashes of (seed, dataset, index, ...). Tar members
carry a fixed mtime, owner and mode; gzip no timestamp or name; Parquet no timestamp.
With the same package versions every file is byte-identical on a rerun, except the TFDS
TFRecord shard, whose records are equal but whose bytes may differ (protobuf map order).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Run from a checkout without installing: the project's packages live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from samples import vl_scenes as scenes  # noqa: E402
from samples.cli import parse_sample_args  # noqa: E402
from samples.vl_files import HF_IMAGE, IMAGE_TYPE, PARQUET_SHARD, TAR_MTIME, hf_list, hf_value  # noqa: E402
from samples.vl_files import sample_members, write_parquet, write_tar  # noqa: E402
from schemas.vl import COCO_CAPTIONS, CONCEPTUAL_CAPTIONS, INTERLEAVED, OKVQA, TEXT, VQAV2  # noqa: E402
from transforms.hashing import stable_randrange, stable_uniform  # noqa: E402

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "text" / "corpus.txt"

COCO_IMAGES = 12
COCO_FIRST_ID = 1001
COCO_PARQUET_SUBDIR = "coco_captions_parquet"
COCO_WDS_SUBDIR = "coco_captions_wds"
CC_SHARDS, CC_PER_SHARD = 2, 8
VQA_IMAGES, VQA_QUESTIONS_PER_IMAGE = 6, 2
VQAV2_FIRST_ID, OKVQA_FIRST_ID = 3001, 4001
OKVQA_TIE = (2, 0)  # (image, question) whose answers tie 4-4: the first listed wins
TEXT_DOCUMENTS = 30
TEXT_LONG = (0, 11, 23)  # documents long enough for 2+ rows of 1024 tokens
TEXT_FILE = "c4-like-00000.jsonl.gz"
INTERLEAVED_DOCUMENTS = 6
INTERLEAVED_PATH_DOCUMENT = 3  # its first image is a file beside the Parquet, not bytes


def image_format(index: int) -> str:
    """Mostly JPEG; every 8th record from the 4th is PNG, from the 7th WebP."""
    return {3: "PNG", 6: "WEBP"}.get(index % 8, "JPEG")


# ---------------------------------------------------------------- COCO captions


@dataclasses.dataclass(frozen=True)
class CocoRecord:
    image_id: int
    filename: str
    jpeg: bytes
    captions: tuple[tuple[int, str], ...]  # (caption id, text), five
    scene: scenes.Scene

    @property
    def key(self) -> str:
        return str(self.image_id)


def coco_records(seed: int) -> list[CocoRecord]:
    """The 12 COCO-like records (JPEG, five captions each), shared by the three formats."""
    records = []
    for index in range(COCO_IMAGES):
        scene = scenes.make_scene(seed, COCO_CAPTIONS.name, index)
        image_id = COCO_FIRST_ID + index
        captions = tuple((image_id * 10 + j, text) for j, text in enumerate(scenes.captions(scene)))
        jpeg = scenes.encode(scenes.render(scene), "JPEG")
        records.append(CocoRecord(image_id, f"COCO_train2014_{image_id:012d}.jpg", jpeg, captions, scene))
    return records


def write_coco_tfds(records: list[CocoRecord], out: Path) -> None:
    """`coco_captions/2014/1.1.0` written by TFDS itself with the public builder's features."""
    from samples.make_samples import remove_recording_leftovers, write_rlu  # needs TensorFlow

    def examples() -> Iterator[tuple[str, dict[str, Any]]]:
        for r in records:
            yield r.filename, {
                "image": r.jpeg, "image/filename": r.filename, "image/id": r.image_id,
                "objects": [],  # COCO's 80 categories name no shapes: no boxes are claimed
                "captions": [{"id": i, "text": t} for i, t in r.captions],
            }

    note = ("\n\nSYNTHETIC SAMPLE: 12 rendered scenes (coloured shapes) with captions derived from "
            "what was drawn, written by gato-data's samples/make_vl_samples.py; not COCO images.")
    write_rlu("coco_captions", "2014", examples, out=str(out), note=note, public_module=True)
    remove_recording_leftovers(out)


def write_coco_parquet(records: list[CocoRecord], out: Path) -> None:
    caption_type = pa.list_(pa.struct([("id", pa.int64()), ("text", pa.string())]))
    write_parquet(out / COCO_PARQUET_SUBDIR / PARQUET_SHARD, {
        "key": (pa.string(), [r.key for r in records]),
        "image": (IMAGE_TYPE, [{"bytes": r.jpeg, "path": r.filename} for r in records]),
        "image_id": (pa.int64(), [r.image_id for r in records]),
        "captions": (caption_type, [[{"id": i, "text": t} for i, t in r.captions] for r in records]),
    }, {
        "key": hf_value("string"), "image": HF_IMAGE, "image_id": hf_value("int64"),
        "captions": hf_list({"id": hf_value("int64"), "text": hf_value("string")}),
    })


def write_coco_wds(records: list[CocoRecord], out: Path) -> None:
    """A WebDataset sample holds one `.txt`: the first caption; all five are in `.json`."""
    members = []
    for r in records:
        meta = {"key": r.key, "image_id": r.image_id, "filename": r.filename,
                "captions": [t for _, t in r.captions], "caption_ids": [i for i, _ in r.captions]}
        members += sample_members(r.key, {
            "jpg": r.jpeg, "txt": r.captions[0][1].encode(), "json": json.dumps(meta, indent=4).encode(),
        })
    write_tar(out / COCO_WDS_SUBDIR / "00000.tar", members)


def make_coco_captions(out: Path, seed: int) -> None:
    records = coco_records(seed)
    write_coco_tfds(records, out)
    write_coco_parquet(records, out)
    write_coco_wds(records, out)


# ---------------------------------------------------------------- Conceptual Captions


def cc_sample(seed: int, index: int) -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """(key, members, meta) of sample `index`, keyed as img2dataset keys: 5-digit shard,
    4-digit position."""
    shard, position = divmod(index, CC_PER_SHARD)
    key = f"{shard:05d}{position:04d}"
    scene = scenes.make_scene(seed, CONCEPTUAL_CAPTIONS.name, index)
    fmt = image_format(index)
    data = scenes.encode(scenes.render(scene), fmt)
    caption = scenes.alt_text(scene, seed=seed, dataset=CONCEPTUAL_CAPTIONS.name, index=index)
    ext = scenes.SUFFIXES[fmt]
    meta = {  # img2dataset's per-sample metadata, in its order
        "url": f"https://example.com/conceptual/{key}.{ext}", "caption": caption, "key": key,
        "status": "success", "error_message": None, "width": scene.width, "height": scene.height,
        "original_width": scene.width, "original_height": scene.height, "exif": "{}",
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return key, {ext: data, "txt": caption.encode(), "json": json.dumps(meta, indent=4).encode()}, meta


CC_META_TYPES = {
    "url": pa.string(), "caption": pa.string(), "key": pa.string(), "status": pa.string(),
    "error_message": pa.string(), "width": pa.int64(), "height": pa.int64(),
    "original_width": pa.int64(), "original_height": pa.int64(), "exif": pa.string(), "sha256": pa.string(),
}


def make_conceptual_captions(out: Path, seed: int) -> None:
    """Shards `0000N.tar` with img2dataset's `0000N.parquet` (metadata) and `_stats.json`."""
    folder = out / CONCEPTUAL_CAPTIONS.data_subdir
    for shard in range(CC_SHARDS):
        samples = [cc_sample(seed, shard * CC_PER_SHARD + i) for i in range(CC_PER_SHARD)]
        write_tar(folder / f"{shard:05d}.tar", [m for key, parts, _ in samples for m in sample_members(key, parts)])
        metas = [meta for _, _, meta in samples]
        table = pa.table({k: pa.array([m[k] for m in metas], t) for k, t in CC_META_TYPES.items()})
        pq.write_table(table, folder / f"{shard:05d}.parquet")
        stats = {  # img2dataset's shard stats; times are fixed, not measured
            "count": len(samples), "successes": len(samples), "failed_to_download": 0,
            "failed_to_resize": 0, "duration": 0.0, "start_time": float(TAR_MTIME),
            "end_time": float(TAR_MTIME), "status_dict": {"success": len(samples)},
        }
        (folder / f"{shard:05d}_stats.json").write_text(json.dumps(stats, indent=4))


# ---------------------------------------------------------------- VQAv2, OK-VQA


def _vqa_image(seed: int, dataset: str, index: int, image_id: int) -> tuple[scenes.Scene, dict[str, Any]]:
    """The scene of image `index` and its `datasets` Image struct (one PNG, one WebP)."""
    scene = scenes.make_scene(seed, dataset, index)
    fmt = image_format(index + 1)
    data = scenes.encode(scenes.render(scene), fmt)
    return scene, {"bytes": data, "path": f"COCO_val2014_{image_id:012d}.{scenes.SUFFIXES[fmt]}"}


VQAV2_ANSWER_TYPE = pa.list_(pa.struct([("answer", pa.string()), ("answer_confidence", pa.string()),
                                        ("answer_id", pa.int64())]))


def make_vqav2(out: Path, seed: int) -> None:
    """HuggingFaceM4/VQAv2's columns: ten answers and the `multiple_choice_answer`."""
    rows: dict[str, list[Any]] = {k: [] for k in ("question_type", "multiple_choice_answer", "answers",
                                                  "image_id", "answer_type", "question_id", "question", "image")}
    for index in range(VQA_IMAGES):
        image_id = VQAV2_FIRST_ID + index
        scene, image = _vqa_image(seed, VQAV2.name, index, image_id)
        for number in range(VQA_QUESTIONS_PER_IMAGE):
            q = scenes.vqa_question(scene, seed=seed, dataset=VQAV2.name, index=index, number=number)
            for name, value in (("question_type", q.question_type), ("multiple_choice_answer", q.answer),
                                ("answers", scenes.vqav2_answers(q.answer, seed=seed, at=(VQAV2.name, index, number))),
                                ("image_id", image_id), ("answer_type", q.answer_type),
                                ("question_id", image_id * 1000 + number), ("question", q.question), ("image", image)):
                rows[name].append(value)
    types = {"question_type": pa.string(), "multiple_choice_answer": pa.string(), "answers": VQAV2_ANSWER_TYPE,
             "image_id": pa.int64(), "answer_type": pa.string(), "question_id": pa.int64(),
             "question": pa.string(), "image": IMAGE_TYPE}
    answer = {"answer": hf_value("string"), "answer_confidence": hf_value("string"), "answer_id": hf_value("int64")}
    features = {"question_type": hf_value("string"), "multiple_choice_answer": hf_value("string"),
                "answers": hf_list(answer), "image_id": hf_value("int64"), "answer_type": hf_value("string"),
                "question_id": hf_value("int64"), "question": hf_value("string"), "image": HF_IMAGE}
    write_parquet(out / VQAV2.data_subdir / PARQUET_SHARD, {k: (types[k], rows[k]) for k in rows}, features)


OKVQA_ANSWER_TYPE = pa.list_(pa.struct([("answer", pa.string()), ("raw_answer", pa.string()),
                                        ("answer_confidence", pa.string()), ("answer_id", pa.int64())]))


def make_okvqa(out: Path, seed: int) -> None:
    """HuggingFaceM4/OK-VQA's columns: ten answers, no `multiple_choice_answer`."""
    rows: dict[str, list[Any]] = {k: [] for k in ("image", "question_type", "confidence", "answers", "image_id",
                                                  "answer_type", "question_id", "question")}
    for index in range(VQA_IMAGES):
        image_id = OKVQA_FIRST_ID + index
        scene, image = _vqa_image(seed, OKVQA.name, index, image_id)
        for number in range(VQA_QUESTIONS_PER_IMAGE):
            question, answer, other = scenes.okvqa_question(scene, seed=seed, dataset=OKVQA.name, index=index, number=number)
            colour = next(s.colour for s in scene.shapes if s.kind in question)
            tie = colour if (index, number) == OKVQA_TIE else None
            answers = scenes.okvqa_answers(answer, other, tie=tie, seed=seed, at=(OKVQA.name, index, number))
            for name, value in (("image", image), ("question_type", "other"), ("confidence", 3),
                                ("answers", answers), ("image_id", image_id), ("answer_type", "other"),
                                ("question_id", image_id * 1000 + number), ("question", question)):
                rows[name].append(value)
    types = {"image": IMAGE_TYPE, "question_type": pa.string(), "confidence": pa.int32(),
             "answers": OKVQA_ANSWER_TYPE, "image_id": pa.int64(), "answer_type": pa.string(),
             "question_id": pa.int64(), "question": pa.string()}
    answer = {"answer": hf_value("string"), "raw_answer": hf_value("string"),
              "answer_confidence": hf_value("string"), "answer_id": hf_value("int64")}
    features = {"image": HF_IMAGE, "question_type": hf_value("string"), "confidence": hf_value("int32"),
                "answers": hf_list(answer), "image_id": hf_value("int64"), "answer_type": hf_value("string"),
                "question_id": hf_value("int64"), "question": hf_value("string")}
    write_parquet(out / OKVQA.data_subdir / PARQUET_SHARD, {k: (types[k], rows[k]) for k in rows}, features)


# ---------------------------------------------------------------- text


def corpus_lines(corpus: Path = CORPUS) -> list[str]:
    return [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]


def _sentences(lines: list[str], count: int, *, seed: int, at: tuple[Any, ...]) -> list[str]:
    """`count` corpus lines picked by hash, each as a sentence."""
    picked = (lines[stable_randrange(len(lines), seed, *at, i)] for i in range(count))
    return [line[0].upper() + line[1:] + "." for line in picked]


def text_document(lines: list[str], index: int, *, seed: int) -> dict[str, str]:
    """A C4-style record: `text` (paragraphs of 2-6 sentences, one per line), `timestamp`, `url`."""
    at = (TEXT.name, index)
    count = 120 + stable_randrange(40, seed, *at, "count") if index in TEXT_LONG else 3 + stable_randrange(28, seed, *at, "count")
    sentences = _sentences(lines, count, seed=seed, at=(*at, "line"))
    paragraphs, start = [], 0
    while start < len(sentences):
        size = 2 + stable_randrange(5, seed, *at, "paragraph", start)
        paragraphs.append(" ".join(sentences[start : start + size]))
        start += size
    minute = stable_randrange(60 * 24 * 28, seed, *at, "time")
    timestamp = f"2019-04-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:00Z"
    return {"text": "\n".join(paragraphs), "timestamp": timestamp, "url": f"https://example.org/babyai/missions-{index:03d}.html"}


def make_text(out: Path, seed: int) -> None:
    """`text/c4-like-00000.jsonl.gz`: gzip without name or mtime, so reruns are identical."""
    lines = corpus_lines()
    body = "".join(json.dumps(text_document(lines, i, seed=seed)) + "\n" for i in range(TEXT_DOCUMENTS))
    path = out / TEXT.data_subdir / TEXT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(body.encode("utf-8"))


# ---------------------------------------------------------------- interleaved (OBELICS layout)


def _slots(texts: int, images: int) -> list[str]:
    """Page order: text first, then alternating; the longer list's rest at the end."""
    order: list[str] = []
    for i in range(max(texts, images)):
        order += (["text"] if i < texts else []) + (["image"] if i < images else [])
    return order


def interleaved_document(lines: list[str], index: int, *, seed: int, out: Path) -> dict[str, Any]:
    """One OBELICS-layout row: aligned `images`/`texts` (one non-null per slot), `metadata`
    (a JSON list aligned with the slots, null for text) and `general_metadata` (JSON).
    A text run before an image describes it. Writes the path-only image under `out`."""
    at = (INTERLEAVED.name, index)
    order = _slots(2 + stable_randrange(3, seed, *at, "texts"), 1 + stable_randrange(3, seed, *at, "images"))
    page = f"https://example.org/shapes/page-{index:03d}.html"
    images: list[dict[str, Any] | None] = []
    texts: list[str | None] = []
    metadata: list[dict[str, Any] | None] = []
    for slot, kind in enumerate(order):
        if kind == "text":
            run = " ".join(_sentences(lines, 1 + stable_randrange(3, seed, *at, "run", slot), seed=seed, at=(*at, slot)))
            if slot + 1 < len(order) and order[slot + 1] == "image":
                following = scenes.make_scene(seed, INTERLEAVED.name, index * 10 + slot + 1)
                described = scenes.captions(following)[0]
                run += " The next picture shows " + described[0].lower() + described[1:]
            images.append(None), texts.append(run), metadata.append(None)
            continue
        scene = scenes.make_scene(seed, INTERLEAVED.name, index * 10 + slot)
        as_file = index == INTERLEAVED_PATH_DOCUMENT and "image" not in order[:slot]
        data = scenes.encode(scenes.render(scene), "PNG" if as_file else "JPEG")
        name = f"{index:05d}-{slot}.{'png' if as_file else 'jpg'}"
        if as_file:  # bytes null, path relative to the Parquet file
            (out / INTERLEAVED.data_subdir / "images").mkdir(parents=True, exist_ok=True)
            (out / INTERLEAVED.data_subdir / "images" / name).write_bytes(data)
        images.append({"bytes": None, "path": f"images/{name}"} if as_file else {"bytes": data, "path": None})
        texts.append(None)
        metadata.append({"document_url": page, "unformatted_src": f"/img/{name}", "src": f"https://example.org/img/{name}",
                         "formatted_filename": name, "alt_text": "", "original_width": scene.width,
                         "original_height": scene.height})
    general = {"url": page, "warc_filename": "synthetic/gato-data-samples.warc.gz",
               "warc_record_offset": 1000 * index, "warc_record_length": 1000}
    return {"images": images, "texts": texts, "metadata": json.dumps(metadata), "general_metadata": json.dumps(general)}


def make_interleaved(out: Path, seed: int) -> None:
    lines = corpus_lines()
    documents = [interleaved_document(lines, i, seed=seed, out=out) for i in range(INTERLEAVED_DOCUMENTS)]
    write_parquet(out / INTERLEAVED.data_subdir / PARQUET_SHARD, {
        "images": (pa.list_(IMAGE_TYPE), [d["images"] for d in documents]),
        "texts": (pa.list_(pa.string()), [d["texts"] for d in documents]),
        "metadata": (pa.string(), [d["metadata"] for d in documents]),
        "general_metadata": (pa.string(), [d["general_metadata"] for d in documents]),
    }, {
        "images": hf_list(HF_IMAGE), "texts": hf_list(hf_value("string")),
        "metadata": hf_value("string"), "general_metadata": hf_value("string"),
    })


# ---------------------------------------------------------------- main


MAKERS: dict[str, Callable[[Path, int], None]] = {
    COCO_CAPTIONS.name: make_coco_captions,
    CONCEPTUAL_CAPTIONS.name: make_conceptual_captions,
    VQAV2.name: make_vqav2,
    OKVQA.name: make_okvqa,
    TEXT.name: make_text,
    INTERLEAVED.name: make_interleaved,
}
# The directories each maker writes (removed first, so nothing stale stays).
WRITES: dict[str, tuple[str, ...]] = {
    COCO_CAPTIONS.name: (COCO_CAPTIONS.data_subdir, COCO_PARQUET_SUBDIR, COCO_WDS_SUBDIR),
    **{spec.name: (spec.data_subdir,) for spec in (CONCEPTUAL_CAPTIONS, VQAV2, OKVQA, TEXT, INTERLEAVED)},
}


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    out, chosen, seed = parse_sample_args(
        argv, description=(__doc__ or "").split("\n\n")[0], makers=list(MAKERS), default_out=str(HERE / "data")
    )
    for name in chosen:
        for subdir in WRITES[name]:
            shutil.rmtree(Path(out, subdir), ignore_errors=True)
        MAKERS[name](Path(out), seed)
        for subdir in WRITES[name]:
            print(f"wrote {Path(out, subdir)}: {directory_bytes(Path(out, subdir)) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
