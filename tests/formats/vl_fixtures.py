"""Tiny vision-language inputs written on the fly: images with Pillow, HF Parquet with
pyarrow, WebDataset tars with tarfile, TFDS coco_captions shards as framed tf.Examples.

`SAMPLES` are three caption records (key, image bytes, captions); each writer gives the
same records in its format, so the readers' outputs can be compared.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from schemas.vl import KIND_CAPTION
from transforms.episode import WorkItem
from transforms.vl_types import ImageRef, VLRecord


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (4, 3)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


# (key, image, captions): the same three records in every format.
SAMPLES: list[tuple[str, bytes, list[bytes]]] = [
    ("000000000", png_bytes((255, 0, 0)), [b"a red square"]),
    ("000000001", png_bytes((0, 255, 0)), [b"a green square"]),
    ("000000002", png_bytes((0, 0, 255)), [b"a blue square"]),
]


def sample_records(source_file: str) -> list[VLRecord]:
    """`SAMPLES` as every reader must give them (work item 3 of dataset `ds`)."""
    return [
        VLRecord(dataset="ds", task="ds", kind=KIND_CAPTION, key=key, source_file=source_file,
                 index_in_file=i, work_item=3, segments=(ImageRef(image), *captions))
        for i, (key, image, captions) in enumerate(SAMPLES)
    ]


def work_item(path: Path, root: Path, *, dataset: str = "ds", index: int = 3, expected: int | None = None) -> WorkItem:
    return WorkItem(
        dataset=dataset, task=dataset, builder_dir=str(root), shard_path=str(path), index=index,
        expected_records=expected, data_root=str(root),
    )


def hf_image_type() -> pa.DataType:
    """The image struct `datasets` writes."""
    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def write_parquet(path: Path, columns: dict[str, Any], *, schema: pa.Schema | None = None, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_caption_parquet(path: Path) -> Path:
    """`SAMPLES` as img2dataset-like HF Parquet: key, image struct, caption string."""
    return write_parquet(
        path,
        {
            "key": [k for k, _, _ in SAMPLES],
            "image": pa.array([{"bytes": img, "path": None} for _, img, _ in SAMPLES], hf_image_type()),
            "caption": [c[0].decode() for _, _, c in SAMPLES],
        },
    )


def write_tar(path: Path, members: Sequence[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_caption_tar(path: Path) -> Path:
    """`SAMPLES` as an img2dataset WebDataset shard: <key>.png, <key>.txt, <key>.json."""
    members = []
    for key, image, captions in SAMPLES:
        members += [
            (f"{key}.png", image),
            (f"{key}.txt", captions[0]),
            (f"{key}.json", json.dumps({"key": key, "status": "success"}).encode()),
        ]
    return write_tar(path, members)


def coco_example(image_id: int, image: bytes, captions: Sequence[bytes]) -> bytes:
    """One serialized tf.Example as TFDS writes coco_captions (the features we read)."""
    from tensorflow_datasets.proto import tf_example_pb2

    example = tf_example_pb2.Example()
    feature = example.features.feature
    feature["image"].bytes_list.value.append(image)
    feature["image/id"].int64_list.value.append(image_id)
    feature["image/filename"].bytes_list.value.append(f"COCO_{image_id:012d}.jpg".encode())
    feature["captions/text"].bytes_list.value.extend(captions)
    feature["captions/id"].int64_list.value.extend(range(len(captions)))
    return example.SerializeToString()


def write_tfrecord(path: Path, records: Sequence[bytes]) -> Path:
    from formats.tfrecord import frame_record

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(frame_record(r) for r in records))
    return path
