"""reader/manifest_checks.py: shard entries the reader cannot trust, shard metadata that
contradicts the manifest, and the manifest's digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec
import pytest

from formats.parquet_shards import sequence_schema
from reader.manifest_checks import check_shard_entries, check_shard_metadata, manifest_digest
from schemas import output as out
from schemas.vocab import DISJOINT, GATO

ENTRY = {out.S_PATH: "sequences/d/t/part-00000-000.parquet", out.S_DATASET: "d", out.S_TASK: "t", out.S_ROWS: 3}


def test_well_formed_entries_pass_and_a_file_listed_twice_is_named() -> None:
    other = {**ENTRY, out.S_PATH: "sequences/d/t/part-00001-000.parquet", out.S_SHA256: "ab" * 32}
    check_shard_entries("u", [ENTRY, other])
    with pytest.raises(ValueError, match=r"u: manifest field 'shards' lists 'sequences/d/t/part-00000-000.parquet' "
                                         r"twice \(entries 0 and 2\)"):
        check_shard_entries("u", [ENTRY, other, {**ENTRY, out.S_PATH: "sequences//d/t/part-00000-000.parquet"}])
    with pytest.raises(ValueError, match=r"u: manifest field shards\[1\] is 'x', not an object"):
        check_shard_entries("u", [ENTRY, "x"])
    with pytest.raises(ValueError, match=r"shards\[0\]\.task is '', not a non-empty string"):
        check_shard_entries("u", [{**ENTRY, out.S_TASK: ""}])
    with pytest.raises(ValueError, match=r"shards\[0\]\.rows is 3\.0, not a non-negative integer"):
        check_shard_entries("u", [{**ENTRY, out.S_ROWS: 3.0}])


def _metadata(layout=GATO, length: int = 8) -> dict[bytes, bytes]:  # noqa: ANN001
    return dict(sequence_schema(layout=layout, fields={}, sequence_length=length).metadata)


def test_shard_metadata_must_say_the_manifests_layout_and_length() -> None:
    manifest = {out.M_VOCABULARY: GATO.to_metadata(), out.M_SEQUENCE_LENGTH: 8}
    check_shard_metadata("u", "s.parquet", _metadata(), manifest)
    with pytest.raises(ValueError, match=r"u: shard 's.parquet' was written with vocabulary \{.*\"name\": \"disjoint\""):
        check_shard_metadata("u", "s.parquet", _metadata(layout=DISJOINT), manifest)
    with pytest.raises(ValueError, match="written with sequence_length 16 but the manifest field 'sequence_length' says 8"):
        check_shard_metadata("u", "s.parquet", _metadata(length=16), manifest)
    lacking = {k: v for k, v in _metadata().items() if k != out.META_FIELDS}
    with pytest.raises(ValueError, match="lacks the schema metadata 'gato.fields'"):
        check_shard_metadata("u", "s.parquet", lacking, manifest)
    with pytest.raises(ValueError, match="lacks the schema metadata 'gato.vocabulary'"):
        check_shard_metadata("u", "s.parquet", None, manifest)
    with pytest.raises(ValueError, match="has unreadable schema metadata"):
        check_shard_metadata("u", "s.parquet", {**_metadata(), out.META_LAYOUT: b"{not json"}, manifest)


def test_manifest_digest_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / out.MANIFEST_FILE
    path.write_bytes(b'{"a": 1}\n')
    assert manifest_digest(fsspec.filesystem("file"), str(path)) == hashlib.sha256(b'{"a": 1}\n').hexdigest()
    with pytest.raises(FileNotFoundError):
        manifest_digest(fsspec.filesystem("file"), str(tmp_path / "none.json"))
