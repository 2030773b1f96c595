"""Opening outputs: unfinished, corrupt and incompatible outputs are refused with clear messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reader import GatoReader, ReaderOptions, check_compatible, open_output
from schemas import output as out
from schemas.vocab import DISJOINT, GATO
from tests.reader.reader_fixtures import write_output

SOURCES = {("ds", "task"): 12}


def _edit_manifest(root: str, edit) -> None:
    path = os.path.join(root, out.MANIFEST_FILE)
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)


def test_opens_by_directory_manifest_path_and_file_url(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    for url in (root, os.path.join(root, out.MANIFEST_FILE), f"file://{root}"):
        o = open_output(url)
        assert o.sequence_length == 32
        assert o.vocabulary == GATO.to_metadata()
        assert [s[out.S_ROWS] for s in o.shards] == [12]


def test_unfinished_output_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES, manifest=False)
    with pytest.raises(ValueError, match="no manifest.json .* unfinished"):
        GatoReader(root)


def test_changed_layout_is_refused(tmp_path: Path) -> None:
    a = write_output(tmp_path / "a", SOURCES)
    b = write_output(tmp_path / "b", {("other", "t"): 5}, layout=DISJOINT)
    with pytest.raises(ValueError, match=r"b: vocabulary layout .* differs from .*a.*cannot be mixed"):
        GatoReader([a, b])
    # A layout differing from the one the model expects is refused even alone.
    with pytest.raises(ValueError, match="differs from the requested layout 'gato'"):
        GatoReader(b, ReaderOptions(layout="gato"))
    # A hand-edited layout (one id moved) differs from every known layout too.
    _edit_manifest(a, lambda m: m[out.M_VOCABULARY].update(pad=5))
    with pytest.raises(ValueError, match="differs from the requested layout 'gato'"):
        GatoReader(a, ReaderOptions(layout=GATO))
    assert check_compatible([open_output(b)], layout="disjoint") == (DISJOINT, 32)


def test_different_sequence_lengths_are_refused(tmp_path: Path) -> None:
    a = write_output(tmp_path / "a", SOURCES, length=32)
    b = write_output(tmp_path / "b", {("other", "t"): 5}, length=16)
    with pytest.raises(ValueError, match="sequence_length 16 differs"):
        GatoReader([a, b])


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    _edit_manifest(root, lambda m: m.update({out.M_FORMAT_VERSION: 2}))
    with pytest.raises(ValueError, match="format_version is 2"):
        open_output(root)


def test_missing_keys_and_bad_json_are_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    _edit_manifest(root, lambda m: m.pop(out.M_SHARDS))
    with pytest.raises(ValueError, match=r"lacks the keys \['shards'\]"):
        open_output(root)
    Path(root, out.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        open_output(root)


def test_truncated_shard_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    _edit_manifest(root, lambda m: m[out.M_SHARDS][0].update({out.S_ROWS: 13}))
    with pytest.raises(ValueError, match="holds 12 rows but the manifest says 13"):
        GatoReader(root)


def test_missing_shard_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    os.remove(os.path.join(root, "sequences", "ds", "task", "part-00000.parquet"))
    with pytest.raises(ValueError, match="cannot be opened as Parquet"):
        GatoReader(root)


def test_shard_path_outside_the_output_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    _edit_manifest(root, lambda m: m[out.M_SHARDS][0].update({out.S_PATH: "../elsewhere.parquet"}))
    with pytest.raises(ValueError, match="not a relative path inside the output directory"):
        GatoReader(root)


def test_normalization_mismatch_is_refused_only_when_normalizing(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    _edit_manifest(root, lambda m: m.update({out.M_IMAGE_NORMALIZATION: "p / 255"}))
    GatoReader(root)  # raw patches: the formula does not matter
    with pytest.raises(ValueError, match="image normalization 'p / 255'"):
        GatoReader(root, ReaderOptions(normalize_images=True))


def test_reads_a_manifest_built_by_the_pipeline_writer(tmp_path: Path) -> None:
    # pipeline.manifest builds the real manifests; the reader must accept them and their weights.
    from formats.manifest import build_manifest, write_manifest

    root = write_output(tmp_path, {("atari", "pong"): 10, ("atari", "breakout"): 30, ("dmlab", "x"): 8})
    shards = open_output(root).shards
    manifest = build_manifest(
        config={"seed": 0},
        layout=GATO,
        fields={},
        sequence_length=32,
        shards=shards,
        dataset_weights={"atari": 9.5, "dmlab": 9.35},
    )
    write_manifest(root, manifest)
    reader = GatoReader(root)
    weights = dict(zip((s.key for s in reader.sources), reader.weights.tolist()))
    atari = 9.5 / (9.5 + 9.35)
    tokens = {"pong": 0, "breakout": 0}
    for shard in shards:
        if shard[out.S_DATASET] == "atari":
            tokens[shard[out.S_TASK]] += shard[out.S_TOKENS]
    share_pong = tokens["pong"] / (tokens["pong"] + tokens["breakout"])
    assert weights[("atari", "pong")] == pytest.approx(atari * share_pong)
    assert weights[("dmlab", "x")] == pytest.approx(1 - atari)


def test_a_manifest_listing_one_shard_twice_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    _edit_manifest(root, lambda m: m[out.M_SHARDS].append(dict(m[out.M_SHARDS][0])))
    with pytest.raises(ValueError, match=r"manifest field 'shards' lists 'sequences/ds/task/part-00000.parquet' "
                                         r"twice \(entries 0 and 1\)"):
        open_output(root)
    # Spelled differently, the same file is still listed twice.
    _edit_manifest(root, lambda m: m[out.M_SHARDS][1].update({out.S_PATH: "sequences/ds/./task/part-00000.parquet"}))
    with pytest.raises(ValueError, match=r"'shards' lists 'sequences/ds/task/part-00000.parquet' twice"):
        GatoReader(root)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (out.S_ROWS, "12", r"shards\[0\]\.rows is '12', not a non-negative integer"),
        (out.S_ROWS, -1, r"shards\[0\]\.rows is -1, not a non-negative integer"),
        (out.S_ROWS, True, r"shards\[0\]\.rows is True, not a non-negative integer"),
        (out.S_PATH, 7, r"shards\[0\]\.path is 7, not a non-empty string"),
        (out.S_DATASET, None, r"shards\[0\]\.dataset is None, not a non-empty string"),
        (out.S_SHA256, "abc", r"shards\[0\]\.sha256 is 'abc', not a hex sha256"),
    ],
)
def test_a_shard_entry_of_the_wrong_type_is_refused_naming_the_field(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    root = write_output(tmp_path, SOURCES)
    _edit_manifest(root, lambda m: m[out.M_SHARDS][0].update({key: value}))
    with pytest.raises(ValueError, match=message):
        open_output(root)


def test_the_same_shard_given_through_two_outputs_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    with pytest.raises(ValueError, match=r"part-00000.parquet is listed by two outputs"):
        GatoReader([root, os.path.join(root, out.MANIFEST_FILE)])


def test_an_unchanged_manifest_passes_and_a_rewritten_or_removed_one_is_named(tmp_path: Path) -> None:
    root = write_output(tmp_path, SOURCES)
    opened = open_output(root)
    assert len(opened.manifest_sha256) == 64
    opened.check_unchanged()
    write_output(tmp_path, {("ds", "task"): 11})  # the output rebuilt in place (e.g. --overwrite)
    with pytest.raises(ValueError, match=r"manifest.json changed while this reader was streaming it .*sha256 "
                                         rf"{opened.manifest_sha256} when opened, [0-9a-f]{{64}} now"):
        opened.check_unchanged()
    os.remove(os.path.join(root, out.MANIFEST_FILE))
    with pytest.raises(ValueError, match="manifest.json is gone"):
        opened.check_unchanged()
