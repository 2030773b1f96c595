"""TFDS `coco_captions` on disk -> caption `VLRecord`s, one TFRecord shard per work item.

Read like the RLDS data, without TensorFlow: records framed and checksummed by
`formats/tfrecord.py`, each parsed as a tf.train.Example with protobuf (the message
class `formats/tf_example.py` uses). TFDS stores coco_captions' features flat: `image`
(the encoded JPEG), `image/id` (int64) and the Sequence of dicts `captions` as
`captions/text` (a list of bytes) and `captions/id`. A mapping name is a flat feature
key; a captions name with no feature of its own reads `<name>/<caption_text>`
(`captions` -> `captions/text`). Key: str(image/id) (`formats.vl_fields.record_key`).
No FeaturesDict is used (`image` and `image/id` cannot both nest), so features.json is
not read: only the mapped keys are converted.

Bad input (every record promised is one record read): a record that cannot be read or
parsed is a record with an UNREADABLE_RECORD problem, keyed `<file>:<index>`; reading
goes on while the framing holds. Records `shardLengths` promises (`expected_records`)
that the file does not hold are such records too, one per record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fsspec
from google.protobuf.message import DecodeError

from formats.tfrecord import CorruptRecord, iter_framed
from formats.vl_fields import row_record, unreadable_record
from schemas.vl import KIND_CAPTION, FieldMapping
from transforms.episode import WorkItem
from transforms.vl_types import VLRecord


def example_row(record: bytes, names: set[str]) -> dict[str, Any]:
    """{flat feature key: list of values} of a serialized tf.train.Example, for the keys in
    `names`; a scalar feature is a one-value list. Raises ValueError if it is no Example."""
    from tensorflow_datasets.proto import tf_example_pb2

    try:
        example = tf_example_pb2.Example.FromString(record)
    except DecodeError as e:
        raise ValueError(f"not a tf.train.Example ({e})") from None
    row: dict[str, Any] = {}
    for key, feature in example.features.feature.items():
        if key not in names:
            continue
        kind = feature.WhichOneof("kind")
        row[key] = [] if kind is None else list(getattr(feature, kind).value)
    return row


def tfds_row(flat: dict[str, Any], mapping: FieldMapping) -> dict[str, Any]:
    """The flat features as a row `row_record` reads: one-value image and id features as
    their value, `captions` as the list of `captions/<caption_text>`."""
    row: dict[str, Any] = {}
    for name in (*mapping.key, *mapping.image, *mapping.image_id):
        values = flat.get(name)
        if values is not None and len(values) == 1:
            row[name] = values[0]
    for name in mapping.captions:
        if name in flat:
            row[name] = flat[name]
            continue
        nested = next((flat[f"{name}/{t}"] for t in mapping.caption_text if f"{name}/{t}" in flat), None)
        if nested is not None:
            row[name] = nested
    return row


def _feature_names(mapping: FieldMapping) -> set[str]:
    captions = {f"{c}/{t}" for c in mapping.captions for t in mapping.caption_text}
    return {*mapping.key, *mapping.image, *mapping.image_id, *mapping.captions, *captions}


def read_tfds(item: WorkItem, *, kind: str, mapping: FieldMapping) -> Iterator[VLRecord]:
    """The records of one coco_captions TFRecord shard in record order (module doc)."""
    if kind != KIND_CAPTION:
        raise ValueError(f"{item.source_file}: the tfds format reads coco_captions (kind caption), not kind {kind!r}")
    names = _feature_names(mapping)
    index, lost = 0, None
    with fsspec.open(item.shard_path, "rb") as stream:
        for record in iter_framed(stream):
            if isinstance(record, CorruptRecord):
                yield unreadable_record(item, kind=kind, index=index, detail=f"{item.source_file}: record {index}: {record}")
                lost = index if record.framing_lost else None
            else:
                try:
                    row = tfds_row(example_row(record, names), mapping)
                except ValueError as e:
                    yield unreadable_record(item, kind=kind, index=index, detail=f"{item.source_file}: record {index}: {e}")
                else:
                    yield row_record(row, item, kind=kind, mapping=mapping, index=index)
            index += 1
    expected = item.expected_records
    found = f"its framing was lost at record {lost}" if lost is not None else f"it holds {index} records"
    for missing in range(index, expected or 0):
        yield unreadable_record(
            item, kind=kind, index=missing,
            detail=f"{item.source_file}: record {missing} not in the file: dataset_info.json promises {expected}, {found}",
        )
