"""schemas/output.py: the output's table schemas and names, a contract with every reader."""

from __future__ import annotations

import re

import pyarrow as pa

from schemas import output as out


def test_sequence_schema_columns_types_and_nullability() -> None:
    assert out.SEQUENCE_SCHEMA.names == [
        "dataset", "task", "episode_id", "sequence_index", "num_tokens", "tokens", "modality",
        "loss_mask", "local_positions", "timestep", "is_prompt", "prompt_episode_id",
        "patch_pixels", "patch_positions",
    ]
    types = {f.name: f.type for f in out.SEQUENCE_SCHEMA}
    assert types["dataset"] == pa.dictionary(pa.int32(), pa.string())
    assert types["tokens"] == pa.list_(pa.int32()) and types["modality"] == pa.list_(pa.int8())
    assert types["local_positions"] == pa.list_(pa.int16()) and types["patch_pixels"] == pa.list_(pa.binary())
    nullable = [f.name for f in out.SEQUENCE_SCHEMA if f.nullable]
    assert nullable == ["prompt_episode_id"]
    assert out.PATCH_POSITION_WIDTH == 4 and out.NO_TIMESTEP == -1


def test_rejects_and_stats_schemas() -> None:
    assert out.REJECTS_SCHEMA.names == ["dataset", "task", "episode_id", "source_file", "reason", "field", "detail"]
    assert [f.name for f in out.REJECTS_SCHEMA if f.nullable] == ["episode_id", "field"]
    assert out.STATS_SCHEMA.names[:2] == ["dataset", "task"]
    assert len(set(out.STATS_SCHEMA.names)) == len(out.STATS_SCHEMA.names)
    assert out.STATS_SCHEMA.field(out.ST_REJECTED_BY_REASON).type == pa.map_(pa.string(), pa.int64())
    assert out.STATS_EPISODES_SCHEMA.names == [
        "dataset", "task", "episode_id", "collection_index", "return", "decision", "reason", "source_file"]


def test_layout_names() -> None:
    assert out.MANIFEST_FILE == "manifest.json" and out.MANIFEST_FORMAT_VERSION == 1
    assert out.SHARD_NAME_FORMAT.format(work_item=7, shard=3) == "part-00007-003.parquet"
    assert out.OUTPUT_SUBDIRS == ("sequences", "rejects", "_tmp", "stats")
    assert out.STATS_JSON_FILE.startswith("stats/") and out.STATS_PARQUET_FILE.startswith("stats/")
    assert all(re.fullmatch(rb"gato\.[a-z_]+", k) for k in (
        out.META_LAYOUT, out.META_FIELDS, out.META_IMAGE_NORMALIZATION, out.META_SEQUENCE_LENGTH))


def test_claim_and_staging_names_are_private_to_the_pipeline() -> None:
    # Underscored, like _tmp: never a dataset, task or published file name.
    assert (out.CLAIM_FILE, out.STAGING_DIR, out.MANIFEST_TEMP_SUFFIX) == ("_claim.json", "_staging", ".tmp")
    assert out.STAGING_DIR not in out.OUTPUT_SUBDIRS


def test_every_sequences_column_carries_its_description_and_units() -> None:
    # Issue 17: a reader of any shard learns what a column means without our README.
    for field in out.SEQUENCE_SCHEMA:
        metadata = field.metadata or {}
        assert metadata[out.FIELD_DESCRIPTION].decode() == out.SEQUENCE_COLUMN_DOCS[field.name][0]
        assert metadata[out.FIELD_UNITS].decode() == out.SEQUENCE_COLUMN_DOCS[field.name][1]
    # The vision-language rows add one column (spec section 8); every column of both is documented.
    assert set(out.SEQUENCE_COLUMN_DOCS) == set(out.VL_SEQUENCE_SCHEMA.names)
    assert out.VL_SEQUENCE_SCHEMA.names == [*out.SEQUENCE_SCHEMA.names, out.SOURCE_KEYS]
    keys = out.VL_SEQUENCE_SCHEMA.field(out.SOURCE_KEYS)
    assert keys.metadata[out.FIELD_DESCRIPTION].decode() == out.SEQUENCE_COLUMN_DOCS[out.SOURCE_KEYS][0]
    assert "511" in out.SEQUENCE_COLUMN_DOCS[out.LOCAL_POSITIONS][0]
    assert "5 separator" in out.SEQUENCE_COLUMN_DOCS[out.MODALITY][0]
