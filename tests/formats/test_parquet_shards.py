"""formats/parquet_shards.py: rows, schema metadata, shard and row-group sizes, determinism,
and rows that decode back to their episodes (spec section 6)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from formats.output_dir import finalize_shards
from formats.parquet_shards import ShardWriter, WriteOptions, _rows_of, decode_metadata, sequence_record_batch
from schemas.fields import FieldSpec
from schemas.output import SEQUENCE_SCHEMA, SEQUENCES_DIR, TMP_DIR
from schemas.vocab import GATO, IMAGE_NORMALIZATION, Encoding, Modality
from tests.formats.shard_fixtures import L, SCHEMA, toy_episodes, write_direct, write_stream
from tests.sequence_fixtures import make_episode
from transforms.episode import EpisodeKey
from transforms.prompts import PromptPool, prompt_candidate, prompt_windows, slice_timesteps
from transforms.sequence import SequenceBatch, SequenceConfig, sequence_episode


def test_record_batch_holds_the_rows_exactly() -> None:
    [(key, batch)] = toy_episodes("toy/a", 0, 4)[3:]
    rb = sequence_record_batch(key, batch, SCHEMA)
    assert rb.schema.equals(SEQUENCE_SCHEMA) and rb.schema.metadata == SCHEMA.metadata
    assert rb.num_rows == batch.num_sequences
    d = rb.to_pydict()
    assert set(d["dataset"]) == {"toy"} and set(d["task"]) == {"toy/a"}
    assert d["tokens"] == batch.tokens.tolist()
    assert d["local_positions"] == batch.local_positions.tolist()
    assert d["is_prompt"] == batch.is_prompt.tolist()
    assert d["prompt_episode_id"] == list(batch.prompt_episode_id)
    assert any(p is not None for p in d["prompt_episode_id"])
    for s in range(rb.num_rows):
        p0, p1 = batch.row_patch_starts[s], batch.row_patch_starts[s + 1]
        want = [batch.patch_pixels[batch.patch_offsets[i]:batch.patch_offsets[i + 1]].tobytes() for i in range(p0, p1)]
        assert d["patch_pixels"][s] == want
        assert d["patch_positions"][s] == batch.patch_positions[p0:p1].reshape(-1).tolist()
        assert len(want) == int((batch.modality[s] == Modality.IMAGE).sum())


def test_metadata_carries_layout_fields_normalization_and_length() -> None:
    meta = decode_metadata(SCHEMA.metadata)
    assert meta["gato.vocabulary"] == GATO.to_metadata()
    assert meta["gato.fields"]["toy"]["observation/x"]["encoding"] == "linear"
    assert meta["gato.image_normalization"] == IMAGE_NORMALIZATION
    assert meta["gato.sequence_length"] == L


def test_shards_and_row_groups_have_the_configured_sizes(tmp_path: Path) -> None:
    total = sum(b.num_sequences for _, b in toy_episodes("toy/a", 7, 3))
    shards = write_direct(str(tmp_path), rows_per_shard=5, row_group_rows=2)
    assert [s["path"] for s in shards] == [
        f"sequences/toy/toy__a/part-00007-{n:03d}.parquet" for n in range(len(shards))
    ]
    assert [s["rows"] for s in shards] == [5] * (total // 5) + ([total % 5] if total % 5 else [])
    for s in shards:
        meta = pq.ParquetFile(tmp_path / s["path"]).metadata
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert groups == [2] * (s["rows"] // 2) + ([1] if s["rows"] % 2 else [])
        assert meta.row_group(0).column(5).compression == "ZSTD"
        assert "RLE_DICTIONARY" in meta.row_group(0).column(0).encodings  # dataset
        data = (tmp_path / s["path"]).read_bytes()
        assert s["bytes"] == len(data) and s["sha256"] == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / TMP_DIR / SEQUENCES_DIR).exists()
    table = pq.read_table([str(tmp_path / s["path"]) for s in shards][0])
    assert table.schema.metadata == SCHEMA.metadata


def test_writing_twice_gives_identical_bytes(tmp_path: Path) -> None:
    one = write_direct(str(tmp_path / "one"), rows_per_shard=4, row_group_rows=3)
    two = write_direct(str(tmp_path / "two"), rows_per_shard=4, row_group_rows=3)
    assert one == two


def _batch_from_rows(table: pa.Table, episode_id: str) -> SequenceBatch:
    """Rebuild one episode's SequenceBatch from Parquet rows (what a trainer would read)."""
    rows = table.filter(pa.compute.equal(table["episode_id"], episode_id)).to_pydict()
    pixels = [p for row in rows["patch_pixels"] for p in row]
    counts = [len(row) for row in rows["patch_pixels"]]
    sizes = [len(p) for p in pixels]
    return SequenceBatch(
        episode_id=episode_id,
        tokens=np.array(rows["tokens"], np.int32),
        modality=np.array(rows["modality"], np.int8),
        loss_mask=np.array(rows["loss_mask"], bool),
        local_positions=np.array(rows["local_positions"], np.int16),
        timestep=np.array(rows["timestep"], np.int32),
        is_prompt=np.array(rows["is_prompt"], bool),
        num_tokens=np.array(rows["num_tokens"], np.int32),
        sequence_index=np.array(rows["sequence_index"], np.int32),
        prompt_episode_id=tuple(rows["prompt_episode_id"]),
        prompt_kind=tuple(None for _ in rows["tokens"]),
        patch_pixels=np.frombuffer(b"".join(pixels), np.uint8),
        patch_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        patch_positions=np.array([v for row in rows["patch_positions"] for v in row], np.int16).reshape(-1, 4),
        row_patch_starts=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        prompts_unavailable=0,
    )


def test_shard_rows_decode_back_to_the_episode(tmp_path: Path) -> None:
    from tests.sequence_fixtures import check_sequences
    from transforms.continuous import tokens_to_values

    shards = write_direct(str(tmp_path), rows_per_shard=4, row_group_rows=3)
    table = pq.read_table([str(tmp_path / s["path"]) for s in shards])
    for i in range(3):
        built = make_episode([1 + (i + t) % 5 for t in range(5 + 3 * i)], patches=1 + i % 2, seed=i)
        batch = _batch_from_rows(table, f"7-{i}")
        check_sequences(batch, built.episode, length=L)
        for t, obs in enumerate(built.observations):
            row, cols = np.nonzero(batch.timestep == t)
            continuous = batch.modality[row, cols] == Modality.CONTINUOUS
            values = tokens_to_values(batch.tokens[row, cols][continuous], Encoding.LINEAR)
            assert np.abs(values - obs).max() <= 1 / 1024 + 1e-12


def test_byte_limit_closes_shards_at_row_group_boundaries(tmp_path: Path) -> None:
    options = WriteOptions(str(tmp_path), rows_per_shard=1000, row_group_rows=2, max_shard_bytes=1)
    entries = write_stream(options, "t", 0, 2)
    rows = sum(b.num_sequences for _, b in toy_episodes("t", 0, 2))
    assert [e.rows for e in entries] == [2] * (rows // 2) + ([1] if rows % 2 else [])
    with pytest.raises(ValueError, match="must be >= 1"):
        WriteOptions(str(tmp_path), row_group_rows=0)


def test_real_tokenizer_rows_decode_back_from_the_shard(tmp_path: Path) -> None:
    """Tokenize -> sequence (with prompts) -> Parquet -> decode each row: spec section 2 precision."""
    from transforms.continuous import mu_law_encode
    from transforms.decode import decode_episode
    from transforms.tokenize import tokenize_episode

    specs = {"observation/image": FieldSpec(Modality.IMAGE),
             "observation/state": FieldSpec(Modality.CONTINUOUS, Encoding.MU_LAW),
             "action": FieldSpec(Modality.DISCRETE)}
    shapes = {"observation/image": (20, 20, 3), "observation/state": (3,), "action": ()}
    rng = np.random.default_rng(0)

    def steps(t: int) -> dict:
        return {"observation": {"image": rng.integers(0, 256, (t, 20, 20, 3), dtype=np.uint8),
                                "state": rng.normal(0, 30, (t, 3)).astype(np.float32)},
                "action": rng.integers(0, 18, t)}

    original, demo = steps(30), steps(12)
    episode = tokenize_episode(original, specs, episode="main")
    demo_tokens = tokenize_episode(demo, specs, episode="demo")
    config = SequenceConfig(sequence_length=L, prompt_fraction=0.5, seed=1, prompt_budget=12)  # 9 tokens a timestep
    windows = prompt_windows(12, lambda a, b: slice_timesteps(demo_tokens, a, b), budget=config.budget,
                             seed=1, task="toy/a", episode_id="demo")
    pool = PromptPool().merged([prompt_candidate("demo", 1.0, windows, seed=1, task="toy/a")])
    batch = sequence_episode(episode, episode_id="main", task="toy/a", config=config, prompts=pool.candidates)
    assert batch.num_prompted > 0
    key = EpisodeKey("toy", "toy/a", "main", (0,), "f", 0, 0)
    options = WriteOptions(str(tmp_path), rows_per_shard=1000, row_group_rows=4)
    writer = ShardWriter(kind=SEQUENCES_DIR, dataset="toy", task="toy/a", work_item=0,
                         schema=SCHEMA, options=options, attempt="real")
    entries = writer.write(sequence_record_batch(key, batch, SCHEMA)) + writer.close()
    [shard] = finalize_shards(str(tmp_path), entries, kind=SEQUENCES_DIR)
    seen = []
    for row in pq.read_table(tmp_path / shard["path"]).to_pylist():
        assert len(row["tokens"]) == L
        decoded = decode_episode(row, specs, shapes=shapes)
        ts = decoded.timesteps
        seen += ts.tolist()
        np.testing.assert_array_equal(decoded.fields["observation/image"][:, :20, :20], original["observation"]["image"][ts])
        np.testing.assert_array_equal(decoded.fields["action"], original["action"][ts])
        f_err = np.abs(mu_law_encode(decoded.fields["observation/state"]) - mu_law_encode(original["observation"]["state"][ts]))
        assert f_err.max() <= 1 / 1024 + 1e-9
    assert seen == list(range(30))  # every timestep exactly once, in order


def test_reject_details_carry_no_memory_address_so_reruns_write_the_same_bytes(tmp_path: Path) -> None:
    # Issue 13, defect 12: Pillow's message for undecodable bytes holds a repr with an address
    # ("cannot identify image file <_io.BytesIO object at 0x7f...>"), which changes every run.
    from formats.parquet_shards import rejects_record_batch, stable_detail
    from transforms.episode import Reject

    def rejects(holder: object) -> bytes:
        detail = f"episode '3', field 'observation/image': image at index 0 cannot be decoded: {holder!r}"
        reject = Reject("d", "t", "3", "/data/t.tfrecord", "corrupt_image", "observation/image", detail)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_batches([rejects_record_batch([reject])]), sink)
        return sink.getvalue().to_pybytes()

    one, two = object(), object()  # both alive: different addresses
    assert repr(one) != repr(two)
    assert rejects(one) == rejects(two)
    assert stable_detail("cannot identify image file <_io.BytesIO object at 0x7f3a2c1d9e40>") == (
        "cannot identify image file <_io.BytesIO object>"
    )
    assert stable_detail("value 0x1f at index 2") == "value 0x1f at index 2"


def test_a_full_disk_removes_the_partial_shard_and_says_so_in_one_line(tmp_path: Path, monkeypatch) -> None:
    import errno

    from formats import parquet_shards
    from formats.files import NoSpaceLeftError

    class FullDisk(pq.ParquetWriter):
        def write_table(self, *args, **kwargs) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(parquet_shards.pq, "ParquetWriter", FullDisk)
    options = WriteOptions(str(tmp_path), rows_per_shard=100)
    with pytest.raises(NoSpaceLeftError) as full:
        write_stream(options, "toy/a", 0, 2)
    assert str(full.value).startswith(f"no space left on {tmp_path}/{TMP_DIR}/{SEQUENCES_DIR}/")
    assert str(full.value).endswith("/part-00000-000.parquet")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_written_shards_keep_the_column_descriptions(tmp_path: Path) -> None:
    from schemas.output import FIELD_DESCRIPTION, FIELD_UNITS

    path = tmp_path / "shard.parquet"
    pq.write_table(pa.Table.from_batches([], schema=SCHEMA), path)
    for field in pq.read_schema(path):
        assert field.metadata[FIELD_DESCRIPTION] == SEQUENCE_SCHEMA.field(field.name).metadata[FIELD_DESCRIPTION]
        assert FIELD_UNITS in field.metadata


@pytest.mark.parametrize(
    ("dtype", "value_type"),
    [(np.int32, pa.int32()), (np.int8, pa.int8()), (np.int16, pa.int16()), (bool, pa.bool_())],
)
@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (3, 5), (7, 9)])
def test_rows_of_equals_pyarrows_own_conversion(dtype: type, value_type: pa.DataType, shape: tuple[int, int]) -> None:
    """Rows built from numpy's buffers (bits packed by numpy for booleans) are the arrays
    `pa.array` makes, so the written bytes do not change; a non-contiguous input too."""
    rng = np.random.default_rng(sum(shape))
    values = (rng.integers(0, 2, shape) if dtype is bool else rng.integers(-100, 100, shape)).astype(dtype)
    for array in (values, np.asfortranarray(values), np.repeat(values, 2, axis=1)[:, ::2]):
        offsets = pa.array(np.arange(shape[0] + 1, dtype=np.int32) * shape[1])
        rows = _rows_of(array, value_type, offsets)
        expected = pa.ListArray.from_arrays(offsets, pa.array(array.reshape(-1), type=value_type))
        assert rows.type == expected.type and rows.equals(expected)
        assert rows.to_pylist() == array.tolist()
