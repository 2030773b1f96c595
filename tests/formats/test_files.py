"""formats/files.py: an output directory's filesystem and root, and whole small files under it,
for local paths and fsspec URLs alike."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from formats.files import output_filesystem, write_bytes


def test_output_filesystem_strips_trailing_slashes_but_keeps_the_root(tmp_path: Path) -> None:
    fs, root = output_filesystem(f"{tmp_path}///")
    assert isinstance(fs, LocalFileSystem) and root == tmp_path.as_posix()
    fs, root = output_filesystem("memory://bucket/out/")
    assert isinstance(fs, MemoryFileSystem) and root == "/bucket/out"
    assert output_filesystem("/")[1] == "/"


def test_write_bytes_creates_directories_and_replaces_the_file(tmp_path: Path) -> None:
    write_bytes(str(tmp_path / "out"), "stats/deep/stats.json", b"{}")
    assert (tmp_path / "out" / "stats" / "deep" / "stats.json").read_bytes() == b"{}"
    write_bytes(str(tmp_path / "out"), "stats/deep/stats.json", b"[1]")
    assert (tmp_path / "out" / "stats" / "deep" / "stats.json").read_bytes() == b"[1]"


def test_write_bytes_works_on_any_fsspec_url() -> None:
    write_bytes("memory://files-test/out", "report.html", b"<html/>")
    with fsspec.open("memory://files-test/out/report.html", "rb") as f:
        assert f.read() == b"<html/>"


@pytest.mark.parametrize("relative", ["../escape.txt", "stats/../../x", ".hidden", "a//b", "/abs"])
def test_write_bytes_refuses_paths_that_leave_the_output_dir(tmp_path: Path, relative: str) -> None:
    with pytest.raises(ValueError, match="unsafe path component"):
        write_bytes(str(tmp_path / "out"), relative, b"x")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()
