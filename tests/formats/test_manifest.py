"""formats/manifest.py: the manifest's content, config hash, atomic write and read (spec section 6)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.manifest import (
    UnfinishedOutputError,
    canonical_json,
    config_hash,
    read_manifest,
    suggested_sampling_weights,
    manifest_text,
    write_manifest,
)
from formats.publish import ManifestMismatchError
from formats.output_dir import prepare_output_dir
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
from schemas.vocab import DISJOINT, IMAGE_NORMALIZATION
from tests.formats.manifest_fixtures import SHARDS, make_finished_output, write_shard_files
from tests.formats.manifest_fixtures import make_manifest as _manifest


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
        "a": {"weight": 3.0, "tasks": {"t0": 0.75, "t1": 0.25}},
        "b": {"weight": 1.0, "tasks": {"t2": 1.0}},
    }
    with pytest.raises(ValueError):
        _manifest(config={"x": float("nan")})


def test_sampling_weights_without_table_values() -> None:
    assert suggested_sampling_weights(SHARDS, {})["a"]["weight"] == 1.0
    # A dataset missing from the table gets the mean of the given weights.
    weights = suggested_sampling_weights(SHARDS, {"a": 2.0})
    assert weights["a"]["weight"] == weights["b"]["weight"] == 2.0


def test_a_table_1_weight_is_kept_as_the_share_of_the_whole_mix_not_rescaled() -> None:
    # One output per dataset: the reader renormalizes atari 0.095 vs coco 0.0067 itself.
    shards = [{"dataset": "coco_captions", "task": "coco_captions", "tokens": 7}]
    assert suggested_sampling_weights(shards, {"coco_captions": 0.0067}) == {
        "coco_captions": {"weight": 0.0067, "tasks": {"coco_captions": 1.0}}
    }
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
    manifest = _manifest(shards=write_shard_files(out))
    path = write_manifest(out, manifest)
    assert path.endswith(MANIFEST_FILE)
    assert read_manifest(out) == json.loads(json.dumps(manifest))
    # Only the manifest and the shards are left: no temporary manifest, no temporary shards.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST_FILE, "sequences"]


def test_read_refuses_another_format_version(tmp_path: Path) -> None:
    manifest = _manifest(shards=write_shard_files(tmp_path))
    manifest["format_version"] = 99
    write_manifest(str(tmp_path), manifest)
    with pytest.raises(ValueError, match="format_version is 99"):
        read_manifest(str(tmp_path))


GOLDEN = Path(__file__).parent / "golden" / "manifest.json"


def test_manifest_matches_the_golden_file(tmp_path: Path) -> None:
    """The manifest format is a contract with readers: any change must be deliberate.

    Regenerate with `GATO_UPDATE_GOLDEN=1 python -m pytest tests/formats/test_manifest.py`.
    """
    text = manifest_text(_manifest())
    if os.environ.get("GATO_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_a_directory_without_manifest_is_unfinished(tmp_path: Path) -> None:
    (tmp_path / "sequences").mkdir()
    with pytest.raises(UnfinishedOutputError, match=f"has no {MANIFEST_FILE}: it is not a finished output"):
        read_manifest(str(tmp_path))


def test_canonical_json_is_sorted_compact_and_refuses_nan() -> None:
    assert canonical_json({"b": [1, 2.5], "a": {"é": None}}) == '{"a":{"é":null},"b":[1,2.5]}'
    assert config_hash({}) == hashlib.sha256(b"{}").hexdigest()
    with pytest.raises(ValueError):
        canonical_json({"x": float("inf")})


def test_config_digest_overrides_the_hash_and_lists_are_sorted_by_path() -> None:
    rejects = [{"path": "rejects/b/x.parquet"}, {"path": "rejects/a/y.parquet"}]
    m = _manifest(config_digest="f" * 64, rejects=rejects,
                  field_shapes={"a": {"t1": {"observation/x": (3, None)}, "t0": {"action": ()}}})
    assert m[M_CONFIG_HASH] == "f" * 64
    assert [r["path"] for r in m["rejects"]] == ["rejects/a/y.parquet", "rejects/b/x.parquet"]
    assert m["field_shapes"] == {"a": {"t0": {"action": []}, "t1": {"observation/x": [3, None]}}}
    assert list(m["field_shapes"]["a"]) == ["t0", "t1"]
    assert m["stats"] == {"json": "stats/stats.json"}


def test_sampling_weights_of_zero_tokens_and_zero_weights_are_zero_not_nan() -> None:
    shards = [{"dataset": "a", "task": "t", "tokens": 0}, {"dataset": "b", "task": "u", "tokens": 5}]
    assert suggested_sampling_weights(shards, {"a": 0.0, "b": 0.0}) == {
        "a": {"weight": 0.0, "tasks": {"t": 0.0}},
        "b": {"weight": 0.0, "tasks": {"u": 1.0}},
    }
    with pytest.raises(ValueError, match="finite"):
        suggested_sampling_weights(shards, {"a": float("nan")})


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abcd"), st.dictionaries(st.sampled_from("tuvw"), st.integers(0, 10**9),
                                                                 min_size=1), min_size=1),
       st.dictionaries(st.sampled_from("abcd"), st.floats(0, 100) | st.none()))
def test_dataset_weights_are_the_given_ones_and_task_shares_sum_to_one(tokens: dict, weights: dict) -> None:
    shards = [{"dataset": d, "task": t, "tokens": n} for d, tasks in tokens.items() for t, n in tasks.items()]
    result = suggested_sampling_weights(shards, weights)
    assert sorted(result) == sorted(tokens)
    given = [w for d, w in weights.items() if d in tokens and w is not None]
    for dataset, entry in result.items():
        expected = weights.get(dataset)
        if expected is None:
            expected = sum(given) / len(given) if given else 1.0
        assert entry["weight"] == pytest.approx(expected)
    for dataset, entry in result.items():
        task_total = sum(entry["tasks"].values())
        assert task_total == pytest.approx(1.0) or sum(tokens[dataset].values()) == 0


def test_manifest_location_accepts_the_directory_or_the_file() -> None:
    from formats.manifest import manifest_location

    _, root, path = manifest_location("memory://bucket/out/")
    assert (root, path) == ("/bucket/out", "/bucket/out/manifest.json")
    _, root, path = manifest_location("memory://bucket/out/manifest.json")
    assert (root, path) == ("/bucket/out", "/bucket/out/manifest.json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds list, not a JSON object"),
        ('{"format_version": 1}', r"manifest lacks the keys \['vocabulary', 'sequence_length', 'shards'\]"),
        ('{"format_version": 1, "vocabulary": {}, "sequence_length": 8, "shards": [{"path": "x"}]}',
         r"shard entry 0 of the manifest lacks the keys \['dataset', 'task', 'rows'\]"),
    ],
)
def test_a_manifest_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / MANIFEST_FILE).write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        read_manifest(str(tmp_path))
    assert str(e.value).startswith(str(tmp_path))
    assert not isinstance(e.value, UnfinishedOutputError)


def test_write_manifest_refuses_shards_missing_or_rewritten_by_another_run(tmp_path: Path) -> None:
    # Issue 13, defect 1: the manifest must match the files it lists.
    out = tmp_path / "out"
    entries = write_shard_files(out)
    (out / entries[0]["path"]).write_bytes(b"a shard of another run")
    (out / entries[1]["path"]).unlink()
    with pytest.raises(ManifestMismatchError, match=(
        r"the manifest does not match the files \(sequences/a/t1/part-00001-000.parquet is missing; "
        r"sequences/b/t2/part-00000-000.parquet has 22 bytes, the manifest says 43\)")):
        write_manifest(str(out), _manifest(shards=entries))
    assert not (out / MANIFEST_FILE).exists()


def test_write_manifest_refuses_a_directory_another_job_claims(tmp_path: Path) -> None:
    from formats.claim import ClaimedOutputError, take_claim

    out = tmp_path / "out"
    entries = write_shard_files(out)
    claim = take_claim(str(out))
    with pytest.raises(ClaimedOutputError, match=f"claimed by run {claim.run_id}"):
        write_manifest(str(out), _manifest(shards=entries))
    assert not (out / MANIFEST_FILE).exists()


def test_make_finished_output_writes_what_the_manifest_lists(tmp_path: Path) -> None:
    manifest = make_finished_output(tmp_path)
    assert read_manifest(str(tmp_path)) == json.loads(json.dumps(manifest))
    assert [s["path"] for s in manifest[M_SHARDS]] == sorted(s["path"] for s in SHARDS)
