"""Output directory life cycle and manifest (spec section 6; issue 5 item 3)."""

from __future__ import annotations

import hashlib
import os
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.output_dir import FinishedOutputError
from formats.manifest import UnfinishedOutputError, build_manifest, canonical_json, config_hash, read_manifest, suggested_sampling_weights, write_manifest
from formats.output_dir import prepare_output_dir
from schemas.fields import FieldSpec
from schemas.output import (
    M_CONFIG,
    M_CONFIG_HASH,
    M_FIELDS,
    M_IMAGE_NORMALIZATION,
    M_SAMPLING_WEIGHTS,
    M_SEQUENCE_LENGTH,
    M_SHARDS,
    M_VOCABULARY,
    MANIFEST_FILE,
    TMP_DIR,
)
from schemas.vocab import DISJOINT, IMAGE_NORMALIZATION, Encoding, Modality

SHARDS = [
    {"path": "sequences/b/t2/part-00000-000.parquet", "dataset": "b", "task": "t2", "rows": 3,
     "tokens": 300, "bytes": 10, "sha256": "0" * 64},
    {"path": "sequences/a/t1/part-00001-000.parquet", "dataset": "a", "task": "t1", "rows": 1,
     "tokens": 100, "bytes": 10, "sha256": "1" * 64},
    {"path": "sequences/a/t0/part-00000-000.parquet", "dataset": "a", "task": "t0", "rows": 3,
     "tokens": 300, "bytes": 10, "sha256": "2" * 64},
]
FIELDS = {"a": {"observation/x": FieldSpec(Modality.CONTINUOUS, Encoding.MU_LAW)}}


def _manifest(**overrides) -> dict:
    args = dict(config={"seed": 1, "sequence_length": 64, "datasets": ["a", "b"]}, layout=DISJOINT,
                fields=FIELDS, sequence_length=64, shards=SHARDS, dataset_weights={"a": 3.0, "b": 1.0},
                stats={"json": "stats/stats.json"})
    args.update(overrides)
    return build_manifest(**args)


def test_manifest_content() -> None:
    m = _manifest()
    assert [s["path"] for s in m[M_SHARDS]] == sorted(s["path"] for s in SHARDS)
    assert m[M_CONFIG_HASH] == hashlib.sha256(canonical_json(m[M_CONFIG]).encode()).hexdigest()
    assert m[M_CONFIG_HASH] == config_hash({"datasets": ["a", "b"], "sequence_length": 64, "seed": 1})
    assert m[M_VOCABULARY]["name"] == "disjoint" and m[M_VOCABULARY]["pad"] == DISJOINT.pad
    assert m[M_SEQUENCE_LENGTH] == 64 and m[M_IMAGE_NORMALIZATION] == IMAGE_NORMALIZATION
    assert m[M_FIELDS] == {"a": {"observation/x": {"modality": "continuous", "encoding": "mu_law",
                                                   "offset": 0, "image_size": None, "loss": None}}}
    assert m[M_SAMPLING_WEIGHTS] == {
        "a": {"weight": 0.75, "tasks": {"t0": 0.75, "t1": 0.25}},
        "b": {"weight": 0.25, "tasks": {"t2": 1.0}},
    }
    with pytest.raises(ValueError):
        _manifest(config={"x": float("nan")})


def test_sampling_weights_without_table_values() -> None:
    assert suggested_sampling_weights(SHARDS, {})["a"]["weight"] == 0.5
    # A dataset missing from the table gets the mean of the given weights.
    weights = suggested_sampling_weights(SHARDS, {"a": 2.0})
    assert weights["a"]["weight"] == weights["b"]["weight"] == 0.5
    assert suggested_sampling_weights([], {"a": 1.0}) == {}
    with pytest.raises(ValueError):
        suggested_sampling_weights(SHARDS, {"a": -1.0})


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3), max_leaves=10)))
def test_config_hash_ignores_key_order(config: dict) -> None:
    shuffled = dict(reversed(list(config.items())))
    assert config_hash(shuffled) == config_hash(config)
    assert json.loads(canonical_json(config)) == config


def test_write_and_read_round_trip_atomically(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    prepare_output_dir(out, overwrite=False)
    (tmp_path / "out" / TMP_DIR / "sequences").mkdir(parents=True)
    path = write_manifest(out, _manifest())
    assert path.endswith(MANIFEST_FILE)
    assert read_manifest(out) == json.loads(json.dumps(_manifest()))
    # Only the manifest is left: no temporary manifest, no temporary shards.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST_FILE]


def test_unfinished_output_is_refused_by_readers_and_cleaned_for_a_rerun(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UnfinishedOutputError, match="not a finished output"):
        read_manifest(str(out))
    # A killed job: partial shards and temporaries, no manifest.
    for name in ("sequences/a/t/part-00000-000.parquet", "_tmp/sequences/x/y.parquet",
                 "rejects/a/t/part-00000-000.parquet", "stats/stats.json", "report.html"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"partial")
    (out / "notes.txt").write_text("the user's own file")
    with pytest.raises(UnfinishedOutputError):
        read_manifest(str(out))
    prepare_output_dir(str(out), overwrite=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_finished_output_refuses_a_rerun_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_output_dir(str(out), overwrite=False)
    (out / "sequences").mkdir()
    (out / "sequences" / "old.parquet").write_bytes(b"old")
    write_manifest(str(out), _manifest())
    with pytest.raises(FinishedOutputError, match="--overwrite"):
        prepare_output_dir(str(out), overwrite=False)
    assert (out / "sequences" / "old.parquet").exists()
    prepare_output_dir(str(out), overwrite=True)
    assert not (out / MANIFEST_FILE).exists() and not (out / "sequences").exists()


def test_read_refuses_another_format_version(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest["format_version"] = 99
    write_manifest(str(tmp_path), manifest)
    with pytest.raises(ValueError, match="format version 99"):
        read_manifest(str(tmp_path))


def test_fsspec_memory_filesystem(tmp_path: Path) -> None:
    out = "memory://gato-test/out"
    prepare_output_dir(out, overwrite=True)
    write_manifest(out, _manifest())
    assert read_manifest(out)[M_SHARDS][0]["dataset"] == "a"
    with pytest.raises(FinishedOutputError):
        prepare_output_dir(out, overwrite=False)


GOLDEN = Path(__file__).parent / "golden" / "manifest.json"


def test_manifest_matches_the_golden_file(tmp_path: Path) -> None:
    """The manifest format is a contract with readers: any change must be deliberate.

    Regenerate with `GATO_UPDATE_GOLDEN=1 python -m pytest tests/pipeline/test_manifest.py`.
    """
    write_manifest(str(tmp_path), _manifest())
    text = (tmp_path / MANIFEST_FILE).read_text()
    if os.environ.get("GATO_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
