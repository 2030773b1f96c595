"""formats/layout.py: which files of an output directory are ours, and staging paths."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from formats.layout import (
    CLAIM,
    FOREIGN,
    MANIFEST,
    PUBLISHED,
    STAGED,
    TEMPORARY,
    list_output,
    path_kind,
    published_dir,
    remove_empty_dirs,
    split_staging,
    staging_dir,
)

RUN = "0123456789abcdef" * 2


@pytest.mark.parametrize(("relative", "kind"), [
    ("manifest.json", MANIFEST),
    ("_claim.json", CLAIM),
    ("sequences/atari/rlu_atari__Pong_run_1/part-00001-000.parquet", PUBLISHED),
    ("rejects/a/t/part-00000-012.parquet", PUBLISHED),
    ("stats/stats.json", PUBLISHED),
    ("stats/episodes.parquet", PUBLISHED),
    ("report.html", PUBLISHED),
    ("README.md", PUBLISHED),  # the dataset card
    ("viewer.html", PUBLISHED),
    ("docs/README.md", FOREIGN),
    ("_tmp/sequences/abc/anything.bin", TEMPORARY),
    (".manifest.json.deadbeef.tmp", TEMPORARY),
    (f"_staging/{RUN}/sequences/a/t/part-00000-000.parquet", STAGED),
    (f"_staging/{RUN}/notes", STAGED),
    ("_staging/not-a-run/x", FOREIGN),
    ("sequences/a/t/part-1.parquet", FOREIGN),
    ("sequences/a/part-00000-000.parquet", FOREIGN),
    ("stats/mine.txt", FOREIGN),
    ("notes.txt", FOREIGN),
    ("manifest.json.bak", FOREIGN),
])
def test_path_kind(relative: str, kind: str) -> None:
    assert path_kind(relative) == kind


def test_staging_paths_round_trip() -> None:
    assert staging_dir("gs://b/out/", RUN) == f"gs://b/out/_staging/{RUN}"
    assert split_staging(f"gs://b/out/_staging/{RUN}") == ("gs://b/out", RUN)
    assert split_staging("/data/out") is None
    assert published_dir(f"/data/out/_staging/{RUN}") == "/data/out"
    assert published_dir("/data/out") == "/data/out"
    with pytest.raises(ValueError, match="32 lowercase hex"):
        staging_dir("/out", "../x")


def test_list_and_remove_empty_dirs(tmp_path: Path) -> None:
    (tmp_path / "sequences" / "a" / "t").mkdir(parents=True)
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "stats.json").write_text("{}")
    fs = fsspec.filesystem("file")
    assert list_output(fs, str(tmp_path)) == {"stats/stats.json": PUBLISHED}
    assert list_output(fs, str(tmp_path / "missing")) == {}
    remove_empty_dirs(fs, str(tmp_path), ("sequences", "stats", "absent"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats"]
