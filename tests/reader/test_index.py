"""reader/index.py: the row-group index, from manifests and Parquet footers only: sources in
(dataset, task) order, row groups in manifest order, and listed counts checked against the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from reader.finished_output import open_output
from reader.index import build_index, listed_sources
from schemas import output as out
from schemas.vocab import GATO
from tests.reader.reader_fixtures import write_output

GATO_METADATA = GATO.to_metadata()

# rows_per_shard 20, row groups of 8: 45 rows -> shards of 20, 20, 5 -> groups 8,8,4 | 8,8,4 | 5.
SOURCES = {("b", "x"): 45, ("a", "y"): 10}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_output(tmp_path_factory.mktemp("out"), SOURCES, length=8, row_group_size=8, rows_per_shard=20)


def test_sources_are_sorted_and_hold_their_row_groups_in_manifest_order(root: str) -> None:
    index = build_index([open_output(root)])
    assert [s.key for s in index.sources] == [("a", "y"), ("b", "x")]
    a, b = index.sources
    assert (a.rows, b.rows) == (10, 45)
    assert index.unit_rows[a.units].tolist() == [8, 2]
    assert index.unit_rows[b.units].tolist() == [8, 8, 4, 8, 8, 4, 5]
    assert index.unit_group[b.units].tolist() == [0, 1, 2, 0, 1, 2, 0]
    files = [Path(index.files[f].path).name for f in index.unit_file[b.units]]
    assert files == ["part-00000.parquet"] * 3 + ["part-00001.parquet"] * 3 + ["part-00002.parquet"]
    # Every unit belongs to exactly one source; a source's rows are its units' rows.
    assert sorted(np.concatenate([a.units, b.units]).tolist()) == list(range(len(index.unit_rows)))
    for s in index.sources:
        assert s.rows == int(index.unit_rows[s.units].sum())


def test_shard_files_carry_their_output_and_listed_digest(root: str) -> None:
    output = open_output(root)
    index = build_index([output])
    listed = {output.shard_path(s[out.S_PATH]): s[out.S_SHA256] for s in output.shards}
    assert {f.path: f.sha256 for f in index.files} == listed
    assert all(f.output_url == root for f in index.files)
    assert all(isinstance(f.open(), pq.ParquetFile) for f in index.files)


def test_keep_limits_the_index_and_two_outputs_of_one_source_join(tmp_path: Path, root: str) -> None:
    other = write_output(tmp_path, {("a", "y"): 3}, length=8)
    index = build_index([open_output(root), open_output(other)], keep={("a", "y")})
    [source] = index.sources
    assert source.key == ("a", "y") and source.rows == 13
    # The first output's row groups, then the second's.
    assert [index.files[f].output_url for f in index.unit_file[source.units]] == [root, root, other]
    assert build_index([open_output(root)], keep=set()).sources == ()


def test_empty_row_groups_are_not_units(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("a", "empty"): 0, ("a", "t"): 2}, length=8)
    index = build_index([open_output(root)])
    assert [s.key for s in index.sources] == [("a", "t")]
    assert listed_sources([open_output(root)]) == {("a", "empty"): 0, ("a", "t"): 2}


def test_listed_sources_sums_the_manifest_rows_over_outputs(tmp_path: Path, root: str) -> None:
    other = write_output(tmp_path, {("a", "y"): 3, ("c", "z"): 1}, length=8)
    assert listed_sources([open_output(root), open_output(other)]) == {("b", "x"): 45, ("a", "y"): 13, ("c", "z"): 1}


def _edit_manifest(root: str, edit) -> None:
    path = Path(root) / out.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_a_listed_row_count_that_differs_from_the_file_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("a", "t"): 5}, length=8)
    _edit_manifest(root, lambda m: m[out.M_SHARDS][0].update({out.S_ROWS: 6}))
    with pytest.raises(ValueError, match="holds 5 rows but the manifest says 6; the shard was changed or truncated"):
        build_index([open_output(root)])


def test_a_shard_that_is_not_parquet_or_lacks_columns_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("a", "t"): 5}, length=8)
    shard = Path(root) / open_output(root).shards[0][out.S_PATH]
    table = pq.read_table(shard)
    pq.write_table(table.drop_columns([out.TOKENS]), shard)
    with pytest.raises(ValueError, match=r"lacks the columns \['tokens'\]"):
        build_index([open_output(root)])
    shard.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="cannot be opened as Parquet .*the output is incomplete or corrupt"):
        build_index([open_output(root)])


def test_a_manifest_vocabulary_that_differs_from_the_shards_is_refused(tmp_path: Path) -> None:
    from schemas.vocab import DISJOINT

    root = write_output(tmp_path, {("a", "y"): 10}, length=8)
    path = Path(root, out.MANIFEST_FILE)
    manifest = json.loads(path.read_text())
    manifest[out.M_VOCABULARY] = DISJOINT.to_metadata()
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"shard 'sequences/a/y/part-00000.parquet' was written with vocabulary "
                                         r'.*"name": "gato".* but the manifest field \'vocabulary\' says .*"name": "disjoint"'):
        build_index([open_output(root)])
    manifest[out.M_VOCABULARY] = GATO_METADATA
    manifest[out.M_SEQUENCE_LENGTH] = 16
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"written with sequence_length 8 but the manifest field 'sequence_length' says 16"):
        build_index([open_output(root)])


def test_a_shard_without_the_writers_metadata_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("a", "y"): 10}, length=8)
    shard = Path(root, "sequences", "a", "y", "part-00000.parquet")
    table = pq.read_table(shard)
    pq.write_table(table.replace_schema_metadata({}), shard)
    path = Path(root, out.MANIFEST_FILE)
    manifest = json.loads(path.read_text())
    manifest[out.M_SHARDS][0].pop(out.S_SHA256)
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"part-00000.parquet' lacks the schema metadata 'gato.vocabulary'"):
        build_index([open_output(root)])
