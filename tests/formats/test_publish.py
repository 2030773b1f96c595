"""formats/publish.py: a staged output is verified, then switched into place (issue 13,
defects 1 and 9): the old output stays valid until the switch, a run that lost its claim
or whose files do not match its manifest publishes nothing. Verifying reads no shard and
lists each directory once; the switch moves files in parallel (issue 14)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from formats.claim import Claim, ClaimLostError, release_claim, take_claim
from formats.manifest import read_manifest, write_manifest
from formats.output_dir import prepare_output_dir
from formats.publish import ManifestMismatchError, verify_shards
from schemas.output import CLAIM_FILE, M_SHARDS, MANIFEST_FILE
from tests.formats.manifest_fixtures import make_finished_output, make_manifest, write_shard_files
from tests.fs_spy import spy_on_files


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _stage(out: Path) -> tuple[Claim, Path]:
    claim = take_claim(str(out))
    return claim, Path(prepare_output_dir(str(out), overwrite=True, run_id=claim.run_id))


NEW = {"path": "sequences/a/t0/part-00000-000.parquet", "dataset": "a", "task": "t0", "rows": 2,
       "tokens": 20}


def test_the_new_output_replaces_the_old_one_only_when_published(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_finished_output(out)
    (out / "report.html").write_text("old report")
    old = _files(out)
    claim, stage = _stage(out)
    payload = b"the new shard"
    (stage / NEW["path"]).parent.mkdir(parents=True)
    (stage / NEW["path"]).write_bytes(payload)
    (stage / "_tmp" / "sequences").mkdir(parents=True)
    new = make_manifest(shards=[{**NEW, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}],
                        config={"output_dir": str(out)})
    # Until the switch, the old output is whole and readable.
    assert {k: v for k, v in _files(out).items() if not k.startswith(("_staging", CLAIM_FILE))} == old
    path = write_manifest(str(stage), new)
    assert path == f"{out}/{MANIFEST_FILE}"
    assert read_manifest(str(out)) == json.loads(json.dumps(new))
    # Same layout as a fresh output: the shard at its relative path, the old files gone.
    release_claim(str(out), claim.run_id)
    assert _files(out) == {MANIFEST_FILE: (out / MANIFEST_FILE).read_bytes(), NEW["path"]: payload}
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_FILE, "sequences"]


def test_a_run_that_lost_its_claim_publishes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_finished_output(out)
    old = _files(out)
    claim, stage = _stage(out)
    entries = write_shard_files(stage)
    (out / CLAIM_FILE).write_bytes(Claim("d" * 32, "host", 1, "now").to_json())  # another job took over
    with pytest.raises(ClaimLostError, match=f"run {claim.run_id} lost its claim"):
        write_manifest(str(stage), make_manifest(shards=entries))
    assert {k: v for k, v in _files(out).items() if not k.startswith(("_staging", CLAIM_FILE))} == old


def test_a_staged_output_that_does_not_match_its_manifest_publishes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_finished_output(out)
    old = _files(out)
    claim, stage = _stage(out)
    entries = write_shard_files(stage)
    (stage / entries[0]["path"]).write_bytes(b"changed after finalize")
    with pytest.raises(ManifestMismatchError, match="not published"):
        write_manifest(str(stage), make_manifest(shards=entries))
    assert {k: v for k, v in _files(out).items() if not k.startswith(("_staging", CLAIM_FILE))} == old
    assert read_manifest(str(out))[M_SHARDS] == make_manifest(shards=write_shard_files(tmp_path / "x"))[M_SHARDS]


def test_verify_shards_accepts_entries_without_a_digest_if_the_file_exists(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"1")
    verify_shards(str(tmp_path), [{"path": "f"}])
    with pytest.raises(ManifestMismatchError, match="g is missing"):
        verify_shards(str(tmp_path), [{"path": "f"}, {"path": "g"}])


def _staged_shards(stage: Path, count: int) -> list[dict]:
    shards = [{"path": f"sequences/a/t{i % 2}/part-{i:05d}-000.parquet", "dataset": "a", "task": f"t{i % 2}",
               "rows": 1, "tokens": 10} for i in range(count)]
    return write_shard_files(stage, shards)


def test_publishing_reads_no_shard_and_lists_each_directory_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 14, item 4: sha256 was measured while each shard was written; verifying
    # re-hashed every shard on one worker (a second download of the output at scale).
    out = tmp_path / "out"
    claim, stage = _stage(out)
    entries = _staged_shards(stage, 40)
    spy = spy_on_files(monkeypatch)
    verify_shards(str(stage), entries)
    assert spy.read() == []
    assert spy.calls["ls"] == 2 and spy.calls["info"] == 0  # two task directories, no stat per shard
    write_manifest(str(stage), make_manifest(shards=entries))
    assert spy.read(".parquet") == []
    assert [s["path"] for s in read_manifest(str(out))[M_SHARDS]] == sorted(s["path"] for s in entries)
    release_claim(str(out), claim.run_id)
    assert all((out / s["path"]).read_bytes() == f"shard {s['path']}".encode() for s in entries)


def test_a_shard_of_another_size_or_missing_is_not_published(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _, stage = _stage(out)
    entries = _staged_shards(stage, 3)
    (stage / entries[1]["path"]).write_bytes(b"longer than what was written")
    (stage / entries[2]["path"]).unlink()
    with pytest.raises(ManifestMismatchError) as refused:
        write_manifest(str(stage), make_manifest(shards=entries))
    assert str(refused.value) == (
        f"{stage}: the manifest does not match the files ({entries[2]['path']} is missing; "  # in the manifest's order
        f"{entries[1]['path']} has 28 bytes, the manifest says {entries[1]['bytes']}); not published"
    )
    assert not (out / MANIFEST_FILE).exists()


def test_a_same_size_change_after_writing_is_left_to_the_readers_checks(tmp_path: Path) -> None:
    # The guarantee issue 14 changed: publishing checks presence and size, not content.
    # A staging directory is written by its run alone (the claim), so a same-size change
    # there is outside damage; gato-audit and the reader, which hash every shard, report it.
    from audit.verify import verify_output

    out = tmp_path / "out"
    claim, stage = _stage(out)
    entries = _staged_shards(stage, 2)
    path = stage / entries[0]["path"]
    path.write_bytes(bytes(reversed(path.read_bytes())))
    write_manifest(str(stage), make_manifest(shards=entries))
    release_claim(str(out), claim.run_id)
    assert any(f"sha256 {hashlib.sha256((out / entries[0]['path']).read_bytes()).hexdigest()}, the manifest lists"
               in problem for problem in verify_output(str(out), []))


def test_the_switch_moves_every_file_before_writing_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The moves run on a thread pool; one that fails leaves no manifest (the old one is
    # already gone: the root reads as unfinished, never as a mix of two outputs).
    import fsspec.implementations.local as local

    out = tmp_path / "out"
    make_finished_output(out)
    claim, stage = _stage(out)
    entries = _staged_shards(stage, 12)
    real_mv = local.LocalFileSystem.mv

    def mv(self, path1: str, path2: str, **kwargs) -> None:
        if path2.endswith("part-00005-000.parquet"):
            raise OSError("injected failure of one move")
        real_mv(self, path1, path2, **kwargs)

    monkeypatch.setattr(local.LocalFileSystem, "mv", mv)
    with pytest.raises(OSError, match="injected failure of one move"):
        write_manifest(str(stage), make_manifest(shards=entries))
    assert not (out / MANIFEST_FILE).exists()
    moved = [s for s in entries if (out / s["path"]).exists()]
    assert len(moved) == 11  # every other move finished before the error surfaced
