"""formats/publish.py: a staged output is verified, then switched into place (issue 13,
defects 1 and 9): the old output stays valid until the switch, a run that lost its claim
or whose files do not match its manifest publishes nothing."""

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
