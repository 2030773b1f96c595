"""samples/make_vl_samples.py reproduces the bundled vision-language and text samples, and
what they hold agrees with what was drawn.

Regenerated files are byte-identical to the bundled ones (same package versions), except
the TFDS TFRecord shard, whose records are compared instead (protobuf map order).
"""

from __future__ import annotations

import collections
import gzip
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from samples import vl_scenes as scenes
from tests.samples.test_bundled_samples import DATA
from tests.samples.test_make_samples import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "samples" / "make_vl_samples.py"
VL_SUBDIRS = ("coco_captions", "coco_captions_parquet", "coco_captions_wds", "conceptual_captions",
              "vqav2", "okvqa", "text", "interleaved")
COCO_DIR = DATA / "coco_captions" / "2014" / "1.1.0"
SHARD = "coco_captions-train.tfrecord-00000-of-00001"
BUDGET_BYTES = 1_500_000


@pytest.fixture(scope="module")
def make_vl() -> ModuleType:
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def regenerated(make_vl: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vl")
    make_vl.main(["--out", str(out)])
    return out


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for d in VL_SUBDIRS for p in (root / d).rglob("*") if p.is_file()}


def _examples(path: Path) -> list[Any]:
    from formats.tfrecord import iter_records
    from tensorflow_datasets.proto import tf_example_pb2

    with open(path, "rb") as f:
        return [tf_example_pb2.Example.FromString(r) for r in iter_records(f)]


def _rows(subdir: str) -> list[dict[str, Any]]:
    return pq.read_table(DATA / subdir / "train-00000-of-00001.parquet").to_pylist()


def _tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


# ---------------------------------------------------------------- reproduction


def test_regenerated_files_equal_the_bundled_ones(regenerated: Path) -> None:
    bundled, again = _files(DATA), _files(regenerated)
    assert sorted(again) == sorted(bundled)
    different = [name for name, path in bundled.items() if name.endswith(SHARD) is False
                 and path.read_bytes() != again[name].read_bytes()]
    assert different == []
    shard = f"coco_captions/2014/1.1.0/{SHARD}"
    assert _examples(again[shard]) == _examples(bundled[shard])


def test_tar_members_carry_no_run_dependent_metadata() -> None:
    with tarfile.open(DATA / "conceptual_captions" / "00000.tar") as tar:
        infos = tar.getmembers()
    assert {(m.mtime, m.mode, m.uname, m.gname, m.uid, m.gid) for m in infos} == {
        (1_704_067_200, 0o444, "bigdata", "bigdata", 0, 0)}


def test_bundled_vl_samples_stay_small() -> None:
    total = sum(p.stat().st_size for p in _files(DATA).values())
    assert 0 < total <= BUDGET_BYTES, f"{total} bytes"


def test_only_rejects_unknown_names(make_vl: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        make_vl.main(["--out", "/nonexistent", "--only", "vqav2,laion"])
    assert "unknown --only ['laion']" in capsys.readouterr().err


# ---------------------------------------------------------------- COCO in three formats


def test_coco_captions_opens_with_the_public_tfds_builder() -> None:
    import tensorflow_datasets as tfds

    builder = tfds.builder("coco_captions/2014", data_dir=str(DATA))
    assert str(builder.version) == "1.1.0" and builder.data_path == COCO_DIR
    from_directory = tfds.builder_from_directory(str(COCO_DIR))
    assert from_directory.info.features.to_json() == builder.info.features.to_json()
    assert list(from_directory.info.splits) == ["train"]
    assert "SYNTHETIC SAMPLE" in from_directory.info.description
    examples = list(from_directory.as_dataset(split="train").as_numpy_iterator())
    assert len(examples) == 12 and all(len(e["captions"]["text"]) == 5 for e in examples)


def _coco_from_tfds() -> dict[str, tuple[bytes, list[str]]]:
    found = {}
    for e in _examples(COCO_DIR / SHARD):
        feature = e.features.feature
        key = str(feature["image/id"].int64_list.value[0])
        texts = [t.decode() for t in feature["captions/text"].bytes_list.value]
        found[key] = (feature["image"].bytes_list.value[0], texts)
    return found


def test_the_same_coco_records_in_three_formats() -> None:
    from_parquet = {r["key"]: (r["image"]["bytes"], [c["text"] for c in r["captions"]]) for r in _rows("coco_captions_parquet")}
    members = _tar(DATA / "coco_captions_wds" / "00000.tar")
    keys = sorted({name.split(".")[0] for name in members})
    from_wds = {k: (members[f"{k}.jpg"], json.loads(members[f"{k}.json"])["captions"]) for k in keys}
    assert keys == [str(i) for i in range(1001, 1013)]
    assert from_parquet == from_wds == _coco_from_tfds()
    assert all(members[f"{k}.txt"].decode() == from_wds[k][1][0] for k in keys)  # .txt: the first caption


# ---------------------------------------------------------------- agreement with the drawing


def test_known_image_its_captions_and_pixels() -> None:
    scene = scenes.make_scene(0, "coco_captions", 0)
    assert (scene.width, scene.height, scene.background, scene.split) == (160, 120, ("grey", "green"), "horizontal")
    assert [(s.kind, s.colour) for s in scene.shapes] == [("triangle", "blue"), ("circle", "purple")]
    (row,) = [r for r in _rows("coco_captions_parquet") if r["key"] == "1001"]
    assert [c["text"] for c in row["captions"]] == [
        "A blue triangle and a purple circle on a grey and green background.",
        "Two shapes on a grey and green background: a blue triangle and a purple circle.",
        "A grey and green background with a blue triangle and a purple circle.",
        "A blue triangle to the left of a purple circle.",
        "A picture of a purple circle and a blue triangle.",
    ]
    pixels = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"), dtype=int)
    assert pixels.shape == (120, 160, 3)
    x0, y0, x1, y1 = scene.shape("circle").box  # type: ignore[union-attr]
    expected = {((y0 + y1) // 2, (x0 + x1) // 2): "purple", (5, 80): "grey", (115, 150): "green"}
    for (y, x), colour in expected.items():
        wanted = scenes.COLOURS[colour]
        assert np.abs(pixels[y, x] - wanted).max() <= 12, (colour, pixels[y, x].tolist(), wanted)


def _most_frequent(answers: list[str]) -> str:
    counts = collections.Counter(answers)
    return max(answers, key=lambda a: (counts[a], -answers.index(a)))


def test_vqav2_answers_agree_with_the_scene() -> None:
    rows = _rows("vqav2")
    assert len(rows) == 12 and len({r["image_id"] for r in rows}) == 6
    for r in rows:
        index, number = r["image_id"] - 3001, r["question_id"] % 1000
        q = scenes.vqa_question(scenes.make_scene(0, "vqav2", index), seed=0, dataset="vqav2", index=index, number=number)
        assert (r["question"], r["multiple_choice_answer"]) == (q.question, q.answer)
        assert [a["answer_id"] for a in r["answers"]] == list(range(1, 11))
        assert _most_frequent([a["answer"] for a in r["answers"]]) == q.answer
    assert (rows[0]["question"], rows[0]["multiple_choice_answer"]) == ("what colour is the square?", "green")
    assert ("square", "green") in [(s.kind, s.colour) for s in scenes.make_scene(0, "vqav2", 0).shapes]
    formats = {Image.open(io.BytesIO(r["image"]["bytes"])).format for r in rows}
    assert formats == {"JPEG", "PNG", "WEBP"}


def test_okvqa_has_one_tie_resolved_by_the_first_listed_answer() -> None:
    rows = _rows("okvqa")
    assert len(rows) == 12 and all("multiple_choice_answer" not in r for r in rows)
    ties = []
    for r in rows:
        answers = [a["answer"] for a in r["answers"]]
        assert answers[0::2] == answers[1::2]  # five annotators, each listed twice
        top = collections.Counter(answers).most_common()
        if len(top) > 1 and top[0][1] == top[1][1]:
            ties.append((r["question_id"], answers))
    assert ties == [(4003000, ["grape", "grape", "eggplant", "eggplant", "grape", "grape",
                               "eggplant", "eggplant", "purple", "purple"])]
    (tied,) = [r for r in rows if r["question_id"] == 4003000]
    triangle = scenes.make_scene(0, "okvqa", 2).shape("triangle")
    assert tied["question"] == "name something that has the same colour as the triangle"
    assert triangle is not None and triangle.colour == "purple"


def test_conceptual_captions_shards_as_img2dataset_writes_them() -> None:
    folder = DATA / "conceptual_captions"
    assert sorted(p.name for p in folder.iterdir()) == [
        "00000.parquet", "00000.tar", "00000_stats.json", "00001.parquet", "00001.tar", "00001_stats.json"]
    extensions = collections.Counter()
    for shard in (0, 1):
        members = _tar(folder / f"{shard:05d}.tar")
        keys = sorted({n.split(".")[0] for n in members})
        assert keys == [f"{shard:05d}{i:04d}" for i in range(8)]
        for key in keys:
            (image,) = [n for n in members if n.startswith(key) and n.split(".")[1] in ("jpg", "png", "webp")]
            extensions[image.split(".")[1]] += 1
            meta = json.loads(members[f"{key}.json"])
            assert meta["key"] == key and meta["status"] == "success" and meta["caption"] == members[f"{key}.txt"].decode()
            width, height = Image.open(io.BytesIO(members[image])).size
            assert (meta["width"], meta["height"]) == (width, height)
    assert extensions == {"jpg": 12, "png": 2, "webp": 2}


def test_text_documents_c4_layout_and_lengths() -> None:
    from transforms.text import SentencePieceTokenizer

    with gzip.open(DATA / "text" / "c4-like-00000.jsonl.gz", "rt", encoding="utf-8") as f:
        documents = [json.loads(line) for line in f]
    assert len(documents) == 30 and all(sorted(d) == ["text", "timestamp", "url"] for d in documents)
    lengths = [len(ids) for ids in SentencePieceTokenizer.from_path("bundled:gato_text.model").encode_batch(
        [d["text"] for d in documents])]
    assert [i for i, n in enumerate(lengths) if n + 1 > 2 * 1024] == [0, 11, 23]  # + E: 3+ rows of 1024
    assert min(lengths) > 0


def test_interleaved_documents_obelics_layout() -> None:
    rows = _rows("interleaved")
    assert len(rows) == 6
    for r in rows:
        images, texts = r["images"], r["texts"]
        assert len(images) == len(texts) and all((i is None) != (t is None) for i, t in zip(images, texts))
        assert 1 <= sum(i is not None for i in images) <= 3 and 2 <= sum(t is not None for t in texts) <= 4
        metadata = json.loads(r["metadata"])
        assert [m is None for m in metadata] == [i is None for i in images]
        assert json.loads(r["general_metadata"])["url"] == metadata[1]["document_url"]
    by_path = [i for r in rows for i in r["images"] if i is not None and i["bytes"] is None]
    assert by_path == [{"bytes": None, "path": "images/00003-1.png"}]
    assert (DATA / "interleaved" / "images" / "00003-1.png").is_file()


@pytest.mark.parametrize("subdir", ["coco_captions_parquet", "vqav2", "okvqa", "interleaved"])
def test_parquet_features_are_what_datasets_reads(subdir: str) -> None:
    datasets = pytest.importorskip("datasets")
    schema = pq.read_schema(DATA / subdir / "train-00000-of-00001.parquet")
    declared = datasets.Features.from_dict(json.loads(schema.metadata[b"huggingface"])["info"]["features"])
    assert declared.type.equals(datasets.Features.from_dict(declared.to_dict()).type)
    loaded = datasets.Dataset.from_parquet(str(DATA / subdir / "train-00000-of-00001.parquet"))
    assert loaded.features == declared and loaded.num_rows == len(_rows(subdir))
    image = declared["images"].feature if subdir == "interleaved" else declared["image"]
    assert isinstance(image, datasets.Image)
