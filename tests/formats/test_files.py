"""formats/files.py: an output directory's filesystem and root, and whole small files under it,
for local paths and fsspec URLs alike."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from formats.files import (
    glob_relative,
    join_url,
    list_names,
    output_filesystem,
    read_bytes,
    url_exists,
    url_is_dir,
    write_bytes,
)


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


def test_a_full_disk_is_one_clear_error_naming_the_path(tmp_path: Path) -> None:
    # Issue 13, defect 13: ENOSPC (here /dev/full) becomes "no space left on <path>".
    import errno

    from formats.files import NoSpaceLeftError, raise_if_no_space

    with pytest.raises(NoSpaceLeftError, match="^no space left on /out/stats.json$") as full:
        with raise_if_no_space("/out/stats.json"), open("/dev/full", "wb", buffering=0) as f:
            f.write(b"x")
    assert isinstance(full.value.__cause__, OSError) and full.value.__cause__.errno == errno.ENOSPC
    with pytest.raises(PermissionError):  # other errors pass through unchanged
        with raise_if_no_space("/out/x"):
            raise PermissionError(errno.EACCES, "denied")


def test_sha256_and_size(tmp_path: Path) -> None:
    import hashlib

    import fsspec

    from formats.files import sha256_and_size

    (tmp_path / "f").write_bytes(b"abc" * 1000)
    assert sha256_and_size(fsspec.filesystem("file"), str(tmp_path / "f")) == (
        hashlib.sha256(b"abc" * 1000).hexdigest(), 3000)


def test_join_url_keeps_the_form_it_was_given() -> None:
    assert join_url("samples/data/", "rlu_atari", "/Pong/") == "samples/data/rlu_atari/Pong"
    assert join_url("gs://bucket/data", "a", "b.json") == "gs://bucket/data/a/b.json"


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_reading_listing_and_globbing_answer_in_the_callers_form(tmp_path: Path, kind: str) -> None:
    base = str(tmp_path / "data") if kind == "local" else "memory://files-test/data"
    for relative in ("ds/a/1.0.0/info.json", "ds/b/1.0.0/info.json", "ds/b/1.0.0/shard-0"):
        write_bytes(base, relative, relative.encode())
    try:
        assert url_exists(base) and url_is_dir(base) and not url_is_dir(join_url(base, "ds/b/1.0.0/shard-0"))
        assert not url_exists(join_url(base, "missing"))
        assert glob_relative(base, "*/*/*/info.json") == ["ds/a/1.0.0/info.json", "ds/b/1.0.0/info.json"]
        assert list_names(join_url(base, "ds/b/1.0.0")) == {"info.json", "shard-0"}
        assert read_bytes(join_url(base, "ds/b/1.0.0/shard-0")) == b"ds/b/1.0.0/shard-0"
    finally:
        if kind == "memory":
            fsspec.filesystem("memory").rm("/files-test", recursive=True)


def test_a_hashing_writer_knows_the_digest_and_size_of_what_it_wrote(tmp_path: Path) -> None:
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from formats.files import HashingWriter

    table = pa.table({"x": list(range(1000)), "y": [str(i) for i in range(1000)]})
    plain = tmp_path / "plain.parquet"
    pq.write_table(table, plain)
    with fsspec.open(str(tmp_path / "hashed.parquet"), "wb") as raw:
        hashed = HashingWriter(raw)
        writer = pq.ParquetWriter(hashed, table.schema)  # pyarrow writes through it like any file
        writer.write_table(table)
        writer.close()
        hashed.close()
    payload = (tmp_path / "hashed.parquet").read_bytes()
    assert payload == plain.read_bytes()  # the wrapper changes no byte
    assert (hashed.size, hashed.sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert hashed.closed and hashed.tell() == len(payload)


def test_a_hashing_writer_hashes_only_what_a_short_write_took() -> None:
    import hashlib

    from formats.files import HashingWriter

    class Short:
        closed = False

        def __init__(self) -> None:
            self.taken = b""

        def write(self, data: memoryview) -> int:
            self.taken += bytes(data[:2])
            return 2

    short = Short()
    hashed = HashingWriter(short)
    assert hashed.write(b"abcdef") == 2 and hashed.write(bytearray(b"gh")) == 2
    assert short.taken == b"abgh"
    assert (hashed.size, hashed.sha256) == (4, hashlib.sha256(b"abgh").hexdigest())
