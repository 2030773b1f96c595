"""A small manifest (three shards of two datasets) shared by the manifest and output-dir tests."""

from __future__ import annotations

from typing import Any

from formats.manifest import build_manifest
from schemas.fields import FieldSpec
from schemas.vocab import DISJOINT, Encoding, Modality

SHARDS = [
    {"path": "sequences/b/t2/part-00000-000.parquet", "dataset": "b", "task": "t2", "rows": 3,
     "tokens": 300, "bytes": 10, "sha256": "0" * 64},
    {"path": "sequences/a/t1/part-00001-000.parquet", "dataset": "a", "task": "t1", "rows": 1,
     "tokens": 100, "bytes": 10, "sha256": "1" * 64},
    {"path": "sequences/a/t0/part-00000-000.parquet", "dataset": "a", "task": "t0", "rows": 3,
     "tokens": 300, "bytes": 10, "sha256": "2" * 64},
]
FIELDS = {"a": {"observation/x": FieldSpec(Modality.CONTINUOUS, Encoding.MU_LAW)}}


def make_manifest(**overrides: Any) -> dict:
    args = dict(config={"seed": 1, "sequence_length": 64, "datasets": ["a", "b"]}, layout=DISJOINT,
                fields=FIELDS, sequence_length=64, shards=SHARDS, dataset_weights={"a": 3.0, "b": 1.0},
                stats={"json": "stats/stats.json"})
    args.update(overrides)
    return build_manifest(**args)
