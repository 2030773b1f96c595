"""formats/output_dir.py: an output directory's life cycle (refuse finished, clean unfinished)
and the atomic, idempotent finalization of shards (spec section 6)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec
import pytest

from formats.manifest import UnfinishedOutputError, read_manifest, write_manifest
from formats.output_dir import FinishedOutputError, ForeignFilesError, finalize_shards, prepare_output_dir
from formats.parquet_shards import WriteOptions
from schemas.output import M_SHARDS, MANIFEST_FILE, REJECTS_DIR, SEQUENCES_DIR, TMP_DIR
from tests.formats.manifest_fixtures import make_finished_output, make_manifest
from tests.formats.shard_fixtures import write_stream
from tests.fs_spy import spy_on_files


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


KILLED_JOB = ("sequences/a/t/part-00000-000.parquet", "_tmp/sequences/x/y.parquet",
              "rejects/a/t/part-00000-000.parquet", "stats/stats.json", "report.html",
              ".manifest.json.0123abcd.tmp", f"_staging/{'e' * 32}/sequences/a/t/part-00000-000.parquet",
              f"_staging/{'e' * 32}/_tmp/sequences/f/x.parquet.tmp")


def _write(root: Path, names: tuple[str, ...]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"partial")


def test_unfinished_output_is_refused_by_readers_and_cleaned_for_a_rerun(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UnfinishedOutputError, match="not a finished output"):
        read_manifest(str(out))
    # A killed job: partial shards, temporaries, a staging directory, no manifest.
    _write(out, KILLED_JOB)
    with pytest.raises(UnfinishedOutputError):
        read_manifest(str(out))
    assert prepare_output_dir(str(out), overwrite=False) == str(out)
    assert list(out.iterdir()) == []  # our files and their empty directories are gone


def test_files_this_pipeline_did_not_write_are_never_deleted(tmp_path: Path) -> None:
    # Issue 13, defect 7: a user's files inside our sub-directories, or beside them.
    out = tmp_path / "out"
    _write(out, KILLED_JOB)
    (out / "stats" / "mine.txt").write_text("the user's own file")
    (out / "sequences" / "notes.md").write_text("also the user's")
    (out / "notes.txt").write_text("and this")
    before = _files(out)
    with pytest.raises(ForeignFilesError) as refused:
        prepare_output_dir(str(out), overwrite=True)
    assert str(refused.value) == (
        f"{out} holds 3 file(s) this pipeline did not write: notes.txt, sequences/notes.md, "
        "stats/mine.txt; nothing was deleted: move them away or choose an empty or new --output_dir"
    )
    assert _files(out) == before


def test_finished_output_refuses_a_rerun_unless_overwrite_and_then_stays_until_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_output_dir(str(out), overwrite=False)
    make_finished_output(out)
    finished = _files(out)
    with pytest.raises(FinishedOutputError, match="--overwrite"):
        prepare_output_dir(str(out), overwrite=False)
    _write(out, ("_tmp/sequences/x/y.parquet", f"_staging/{'e' * 32}/report.html"))
    # Issue 13, defect 9: --overwrite keeps the old output readable; only leftovers go.
    target = prepare_output_dir(str(out), overwrite=True, run_id="f" * 32)
    assert target == f"{out}/_staging/{'f' * 32}" and Path(target).is_dir()
    assert _files(out) == finished
    assert read_manifest(str(out))[M_SHARDS][0]["dataset"] == "a"


def test_fsspec_memory_filesystem(tmp_path: Path) -> None:
    out = "memory://gato-test/out"
    prepare_output_dir(out, overwrite=True)
    with fsspec.open(f"{out}/sequences/a/t0/part-00000-000.parquet", "wb") as f:
        f.write(b"x")
    shard = {"path": "sequences/a/t0/part-00000-000.parquet", "dataset": "a", "task": "t0", "rows": 1,
             "tokens": 1, "bytes": 1, "sha256": hashlib.sha256(b"x").hexdigest()}
    write_manifest(out, make_manifest(shards=[shard]))
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


def test_finalize_moves_shards_into_place_with_the_writers_size_and_digest(tmp_path: Path) -> None:
    from formats.parquet_shards import ShardEntry

    temp = tmp_path / TMP_DIR / SEQUENCES_DIR / "a1" / "x.parquet"
    temp.parent.mkdir(parents=True)
    temp.write_bytes(b"12345")
    rejects_tmp = tmp_path / TMP_DIR / REJECTS_DIR / "a1" / "r.parquet"
    rejects_tmp.parent.mkdir(parents=True)
    rejects_tmp.write_bytes(b"r")
    digest = hashlib.sha256(b"12345").hexdigest()
    entry = ShardEntry(SEQUENCES_DIR, "sequences/d/t/part-00000-000.parquet", str(temp), "d", "t", rows=3, tokens=7,
                       bytes=5, sha256=digest)
    [listed] = finalize_shards(str(tmp_path), [entry], kind=SEQUENCES_DIR)
    assert listed == {"path": entry.path, "dataset": "d", "task": "t", "rows": 3, "tokens": 7,
                      "bytes": 5, "sha256": digest}
    assert (tmp_path / entry.path).read_bytes() == b"12345" and not temp.exists()
    assert rejects_tmp.exists()  # the other kind may still be writing
    missing = ShardEntry(SEQUENCES_DIR, "sequences/d/t/part-00001-000.parquet", str(temp), "d", "t", 1, 1, 1, "0")
    with pytest.raises(FileNotFoundError, match="shard sequences/d/t/part-00001-000.parquet is neither at"):
        finalize_shards(str(tmp_path), [missing], kind=SEQUENCES_DIR)


def test_finalize_never_reads_a_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 14, item 4: the writer hashed each shard while writing it; finalizing only moves
    # files (at scale, reading the output again on one worker was a second full download).
    entries = write_stream(WriteOptions(str(tmp_path), rows_per_shard=4), "t", 0, 3)
    assert len(entries) > 1
    spy = spy_on_files(monkeypatch)
    listed = finalize_shards(str(tmp_path), entries, kind=SEQUENCES_DIR)
    assert spy.read() == []
    for shard in listed:
        payload = (tmp_path / shard["path"]).read_bytes()
        assert (shard["bytes"], shard["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())


def test_prepare_creates_a_missing_directory(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    prepare_output_dir(str(out), overwrite=False)
    assert out.is_dir() and list(out.iterdir()) == []
    (out / "statistics").mkdir()  # an empty directory holds no file to refuse
    prepare_output_dir(str(out), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["statistics"]
