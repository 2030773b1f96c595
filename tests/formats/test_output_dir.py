"""formats/output_dir.py: an output directory's life cycle (refuse finished, clean unfinished)
and the atomic, idempotent finalization of shards (spec section 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats.manifest import UnfinishedOutputError, read_manifest, write_manifest
from formats.output_dir import FinishedOutputError, finalize_shards, prepare_output_dir
from formats.parquet_shards import WriteOptions
from schemas.output import M_SHARDS, MANIFEST_FILE, REJECTS_DIR, SEQUENCES_DIR, TMP_DIR
from tests.formats.manifest_fixtures import make_manifest as _manifest
from tests.formats.shard_fixtures import write_stream


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


def test_fsspec_memory_filesystem(tmp_path: Path) -> None:
    out = "memory://gato-test/out"
    prepare_output_dir(out, overwrite=True)
    write_manifest(out, _manifest())
    assert read_manifest(out)[M_SHARDS][0]["dataset"] == "a"
    with pytest.raises(FinishedOutputError):
        prepare_output_dir(out, overwrite=False)


def test_finalize_removes_orphans_refuses_duplicates_and_is_idempotent(tmp_path: Path) -> None:
    out = str(tmp_path)
    orphan = tmp_path / TMP_DIR / SEQUENCES_DIR / "deadbeef" / "sequences" / "x.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a shard")
    entries = write_stream(WriteOptions(out, rows_per_shard=100), "t", 0, 2)
    with pytest.raises(ValueError, match="shards written twice"):
        finalize_shards(out, entries + entries, kind=SEQUENCES_DIR)
    first = finalize_shards(out, entries, kind=SEQUENCES_DIR)
    assert not orphan.exists()
    assert finalize_shards(out, entries, kind=SEQUENCES_DIR) == first  # a retried finalize
    assert finalize_shards(out, entries, kind=REJECTS_DIR) == []


def test_finalize_moves_shards_into_place_with_their_size_and_digest(tmp_path: Path) -> None:
    import hashlib

    from formats.parquet_shards import ShardEntry

    temp = tmp_path / TMP_DIR / SEQUENCES_DIR / "a1" / "x.parquet"
    temp.parent.mkdir(parents=True)
    temp.write_bytes(b"12345")
    rejects_tmp = tmp_path / TMP_DIR / REJECTS_DIR / "a1" / "r.parquet"
    rejects_tmp.parent.mkdir(parents=True)
    rejects_tmp.write_bytes(b"r")
    entry = ShardEntry(SEQUENCES_DIR, "sequences/d/t/part-00000-000.parquet", str(temp), "d", "t", rows=3, tokens=7)
    [listed] = finalize_shards(str(tmp_path), [entry], kind=SEQUENCES_DIR)
    assert listed == {"path": entry.path, "dataset": "d", "task": "t", "rows": 3, "tokens": 7,
                      "bytes": 5, "sha256": hashlib.sha256(b"12345").hexdigest()}
    assert (tmp_path / entry.path).read_bytes() == b"12345" and not temp.exists()
    assert rejects_tmp.exists()  # the other kind may still be writing
    missing = ShardEntry(SEQUENCES_DIR, "sequences/d/t/part-00001-000.parquet", str(temp), "d", "t", 1, 1)
    with pytest.raises(FileNotFoundError, match="shard sequences/d/t/part-00001-000.parquet is neither at"):
        finalize_shards(str(tmp_path), [missing], kind=SEQUENCES_DIR)


def test_prepare_creates_a_missing_directory_and_leaves_others_files(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    prepare_output_dir(str(out), overwrite=False)
    assert out.is_dir() and list(out.iterdir()) == []
    (out / "stats").mkdir()
    (out / "stats" / "mine.txt").write_text("ours: removed")
    (out / "statistics").mkdir()  # not one of our sub-directories
    prepare_output_dir(str(out), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["statistics"]
