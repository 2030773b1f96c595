"""Shard checksums: a shard changed after its manifest was written never streams silently."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import reader.checksum as checksum
import reader.stream as stream_module
from reader import GatoReader, ReaderOptions
from reader.checksum import verify_shard
from schemas import output as out
from tests.reader.reader_fixtures import episode_id, write_output

LENGTH = 32
MARK = 4321  # a token id the fixture never writes (its ids are < 1000)
SHARD = "sequences/d/t/part-00000.parquet"


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count sha256_of calls per path (the real hash still runs)."""
    calls: Counter[str] = Counter()
    real = checksum.sha256_of

    def counting(fs, path: str) -> str:  # noqa: ANN001
        calls[Path(path).as_posix()] += 1
        return real(fs, path)

    monkeypatch.setattr(checksum, "sha256_of", counting)
    return calls


def _change_one_token(shard: Path, row: int, column: int) -> None:
    """Rewrite the shard with tokens[row, column] = MARK: same schema, rows and row groups."""
    table = pq.read_table(shard)
    tokens = np.stack([np.asarray(t, dtype=np.int32) for t in table.column(out.TOKENS).to_pylist()])
    tokens[row, column] = MARK
    field = table.schema.get_field_index(out.TOKENS)
    column = pa.array(list(tokens), type=out.SEQUENCE_SCHEMA.field(out.TOKENS).type)
    table = table.set_column(field, table.schema.field(field), column)
    pq.write_table(table, f"{shard}.tmp", row_group_size=8)
    Path(f"{shard}.tmp").replace(shard)  # renamed into place, as the writer does


def _manifest_sha(root: str, relative: str) -> str:
    manifest = json.loads(Path(root, out.MANIFEST_FILE).read_text())
    return next(s[out.S_SHA256] for s in manifest[out.M_SHARDS] if s[out.S_PATH] == relative)


def _all_rows(root: str, **options: object) -> list[tuple[str, np.ndarray]]:
    """(episode id, tokens) of every row of one epoch."""
    reader = GatoReader(root, ReaderOptions(exhausted="drop", num_epochs=1, shuffle_buffer=4, **options))
    return [(e, t) for b in reader.batches(2) for e, t in zip(b[out.EPISODE_ID], b[out.TOKENS])]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_shard_rewritten_with_one_token_changed_is_refused(tmp_path: Path, prefetch: int) -> None:
    root = write_output(tmp_path, {("d", "t"): 16}, length=LENGTH, rows_per_shard=16)
    shard = Path(root, *SHARD.split("/"))
    expected = _manifest_sha(root, SHARD)
    _change_one_token(shard, row=3, column=LENGTH // 2)
    found = hashlib.sha256(shard.read_bytes()).hexdigest()
    assert found != expected and pq.ParquetFile(shard).metadata.num_rows == 16  # row count still matches
    reader = GatoReader(root, ReaderOptions(shuffle_buffer=4, prefetch=prefetch))  # footers pass
    with pytest.raises(ValueError) as info:
        next(reader.batches(4))
    message = str(info.value)
    assert str(shard) in message and expected in message and found in message and root in message
    assert "verify_checksums=False" in message


def test_a_flipped_byte_inside_a_data_page_is_refused(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("d", "t"): 16}, length=LENGTH, rows_per_shard=16)
    shard = Path(root, *SHARD.split("/"))
    meta = pq.ParquetFile(shard).metadata
    tokens_column = out.SEQUENCE_SCHEMA.get_field_index(out.TOKENS)
    offset = meta.row_group(1).column(tokens_column).data_page_offset + 20
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0x01
    shard.write_bytes(bytes(data))
    reader = GatoReader(root, ReaderOptions(shuffle_buffer=4, prefetch=0))
    with pytest.raises(ValueError, match=rf"shard '{shard}' has sha256 [0-9a-f]{{64}}, but the manifest lists"):
        next(reader.batches(4))


def test_verify_checksums_false_streams_the_changed_shard(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("d", "t"): 16}, length=LENGTH, rows_per_shard=16)
    _change_one_token(Path(root, *SHARD.split("/")), row=3, column=LENGTH // 2)
    rows = _all_rows(root, verify_checksums=False, prefetch=0)
    assert sorted(e for e, _ in rows) == sorted(episode_id("d", "t", i) for i in range(16))
    marked = [(e, int(np.flatnonzero(t == MARK)[0])) for e, t in rows if (t == MARK).any()]
    assert marked == [(episode_id("d", "t", 3), LENGTH // 2)]  # the change reaches the batch as written


def test_an_intact_output_streams_the_same_with_and_without_verification(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("d", "t"): 30, ("e", "u"): 20}, length=LENGTH, rows_per_shard=8)
    checked = _all_rows(root, prefetch=2)
    unchecked = _all_rows(root, verify_checksums=False, prefetch=0)
    assert len(checked) == 50
    assert [e for e, _ in checked] == [e for e, _ in unchecked]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(checked, unchecked))


def test_each_shard_is_hashed_once_per_process_and_only_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_hashes(monkeypatch)
    monkeypatch.setattr(stream_module, "_OPEN_FILES", 1)  # files are closed and reopened between reads
    # 3 shards of 4 row groups for "d", one shard for "z" that has weight 0 (never read).
    root = write_output(
        tmp_path, {("d", "t"): 48, ("z", "t"): 8}, length=LENGTH, row_group_size=4, rows_per_shard=16
    )
    reader = GatoReader(root, ReaderOptions(shuffle_buffer=4, prefetch=2, dataset_weights={"d": 1.0, "z": 0.0}))
    assert not calls  # opening reads footers only: nothing is hashed at start-up
    with reader.batches(4) as stream:
        for _ in range(3 * 48 // 4):  # three epochs: every row group read three times
            next(stream)
    other = GatoReader(root, ReaderOptions(seed=5, prefetch=0, dataset_weights={"d": 1.0, "z": 0.0}))
    next(other.batches(8, rank=1, world_size=2))  # another reader and stream in this process
    shards = {Path(root, "sequences", "d", "t", f"part-{p:05d}.parquet").as_posix() for p in range(3)}
    assert calls == Counter({s: 1 for s in shards})


def test_concurrent_verification_hashes_a_shard_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_hashes(monkeypatch)
    root = write_output(tmp_path, {("d", "t"): 8}, length=LENGTH)
    reader = GatoReader(root)
    file = reader.index.files[0]
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def verify() -> None:
        start.wait()
        try:
            verify_shard(file.fs, file.path, file.sha256, output_url=file.output_url)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(e)

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and list(calls.values()) == [1]


def test_a_manifest_without_digests_needs_verification_off(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("d", "t"): 8}, length=LENGTH)
    path = Path(root, out.MANIFEST_FILE)
    manifest = json.loads(path.read_text())
    for shard in manifest[out.M_SHARDS]:
        del shard[out.S_SHA256]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"lists no sha256 for shard .*part-00000.parquet"):
        next(GatoReader(root, ReaderOptions(prefetch=0)).batches(4))
    assert len(_all_rows(root, verify_checksums=False, prefetch=0)) == 8


def test_a_mismatch_is_not_cached(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("d", "t"): 8}, length=LENGTH)
    _change_one_token(Path(root, *SHARD.split("/")), row=0, column=LENGTH // 2)
    reader = GatoReader(root, ReaderOptions(prefetch=0))
    for _ in range(2):
        with pytest.raises(ValueError, match="but the manifest lists"):
            next(reader.batches(4))


def _stream_two_sources(root: str, monkeypatch: pytest.MonkeyPatch, **options: object):  # noqa: ANN202
    """A stream of two 16-row sources that has read every row group once, with one file open at
    a time, so that every later row-group read reopens its shard."""
    monkeypatch.setattr(stream_module, "_OPEN_FILES", 1)
    reader = GatoReader(root, ReaderOptions(shuffle_buffer=4, **options))
    stream = reader.batches(4)
    for _ in range(8):
        next(stream)
    return stream


TWO_SOURCES = {("d", "t"): 16, ("e", "u"): 16}


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_shard_replaced_after_it_was_verified_is_refused_when_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefetch: int
) -> None:
    root = write_output(tmp_path, TWO_SOURCES, length=LENGTH, rows_per_shard=16)
    stream = _stream_two_sources(root, monkeypatch, prefetch=prefetch)
    _change_one_token(Path(root, *SHARD.split("/")), row=3, column=LENGTH // 2)  # same rows and row groups
    with pytest.raises(ValueError, match=rf"shard '.*{SHARD}' has sha256 [0-9a-f]{{64}}, but the manifest lists"):
        for _ in range(40):
            batch = next(stream)
            assert not (batch[out.TOKENS] == MARK).any()  # never a changed row before the error


@pytest.mark.parametrize("verify", [True, False])
def test_a_reader_stops_when_the_output_is_rebuilt_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verify: bool
) -> None:
    root = write_output(tmp_path, TWO_SOURCES, length=LENGTH, rows_per_shard=16)
    stream = _stream_two_sources(root, monkeypatch, prefetch=0, verify_checksums=verify)
    # --overwrite with other options: the same paths, rows and row groups, other bytes and manifest.
    write_output(tmp_path, TWO_SOURCES, length=LENGTH, rows_per_shard=16, patch_count=lambda i: (i + 1) % 3)
    with pytest.raises(ValueError, match=rf"{root}: manifest.json changed while this reader was streaming it"):
        for _ in range(40):
            next(stream)


def test_a_reader_stops_when_the_manifest_is_removed_under_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_output(tmp_path, TWO_SOURCES, length=LENGTH, rows_per_shard=16)
    stream = _stream_two_sources(root, monkeypatch, prefetch=0)
    Path(root, out.MANIFEST_FILE).unlink()  # an --overwrite run that has started
    with pytest.raises(ValueError, match=rf"{root}: manifest.json is gone"):
        for _ in range(40):
            next(stream)


def test_an_identical_rebuild_streams_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_output(tmp_path, TWO_SOURCES, length=LENGTH, rows_per_shard=16)
    stream = _stream_two_sources(root, monkeypatch, prefetch=0)
    write_output(tmp_path, TWO_SOURCES, length=LENGTH, rows_per_shard=16)  # the same job again: the same bytes
    assert len([next(stream) for _ in range(40)]) == 40
