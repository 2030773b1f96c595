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


def write_shard_files(out: Any, shards: list[dict] = SHARDS) -> list[dict]:
    """Writes a small file at each shard path under `out`; returns the entries with their
    real bytes and sha256 (what `write_manifest` checks)."""
    import hashlib
    from pathlib import Path

    entries = []
    for shard in shards:
        payload = f"shard {shard['path']}".encode()
        path = Path(out) / shard["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        entries.append({**shard, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()})
    return entries


def make_finished_output(out: Any, **overrides: Any) -> dict:
    """A finished output at `out`: the shard files and their manifest; returns the manifest."""
    from formats.manifest import write_manifest

    manifest = make_manifest(shards=write_shard_files(out), **overrides)
    write_manifest(str(out), manifest)
    return manifest
