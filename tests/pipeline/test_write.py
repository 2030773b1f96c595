"""Parquet shards: schema, sizes, atomic finalization, readers, determinism (spec section 6)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from transforms.episode import EpisodeKey, Reject
from formats.manifest import build_manifest, read_manifest, write_manifest
from formats.output_dir import finalize_shards
from formats.parquet_shards import ShardWriter, WriteOptions, decode_metadata, sequence_record_batch, sequence_schema
from pipeline.write_shards import FinalizeShards, WriteRejects, WriteShards
from schemas.fields import FieldSpec
from schemas.output import (
    M_REJECTS,
    M_SHARDS,
    REJECTS_DIR,
    REJECTS_SCHEMA,
    SEQUENCE_SCHEMA,
    SEQUENCES_DIR,
    TMP_DIR,
)
from schemas.vocab import GATO, IMAGE_NORMALIZATION, Encoding, Modality
from tests.sequence_fixtures import make_episode
from transforms.prompts import PromptPool, prompt_candidate, prompt_windows, slice_timesteps
from transforms.sequence import SequenceBatch, SequenceConfig, sequence_episode

L = 32
FIELDS = {"toy": {"observation/x": FieldSpec(Modality.CONTINUOUS, Encoding.LINEAR),
                  "action": FieldSpec(Modality.DISCRETE)}}
SCHEMA = sequence_schema(layout=GATO, fields=FIELDS, sequence_length=L)


def _pool() -> PromptPool:
    ep = make_episode([2, 1, 3] * 4, patches=1, seed=77).episode
    windows = prompt_windows(ep.num_timesteps, lambda a, b: slice_timesteps(ep, a, b), budget=L // 4,
                             seed=0, task="toy/a", episode_id="demo")
    return PromptPool().merged([prompt_candidate("demo", 9.0, windows, seed=0, task="toy/a")])


def _episodes(task: str, work_item: int, count: int) -> list[tuple[EpisodeKey, SequenceBatch]]:
    config = SequenceConfig(sequence_length=L, prompt_fraction=0.3, seed=5)
    pool = _pool()
    out = []
    for i in range(count):
        episode_id = f"{work_item}-{i}"
        built = make_episode([1 + (i + t) % 5 for t in range(5 + 3 * i)], patches=1 + i % 2, seed=i)
        key = EpisodeKey("toy", task, episode_id, (work_item, i), f"file-{work_item}", i, work_item)
        out.append((key, sequence_episode(built.episode, episode_id=episode_id, task=task,
                                          config=config, prompts=pool.candidates)))
    return out


def test_record_batch_holds_the_rows_exactly() -> None:
    [(key, batch)] = _episodes("toy/a", 0, 4)[3:]
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


def _write_stream(options: WriteOptions, task: str, work_item: int, count: int) -> list:
    """ShardEntries of one (dataset, task, work item) stream of `count` episodes."""
    writer = ShardWriter(kind=SEQUENCES_DIR, dataset="toy", task=task, work_item=work_item,
                         schema=SCHEMA, options=options, attempt=f"attempt{work_item}")
    entries = []
    for key, batch in _episodes(task, work_item, count):
        entries += writer.write(sequence_record_batch(key, batch, SCHEMA))
    return entries + writer.close()


def _write_direct(out: str, rows_per_shard: int, row_group_rows: int) -> list[dict]:
    options = WriteOptions(out, rows_per_shard=rows_per_shard, row_group_rows=row_group_rows)
    return finalize_shards(out, _write_stream(options, "toy/a", 7, 3), kind=SEQUENCES_DIR)


def test_shards_and_row_groups_have_the_configured_sizes(tmp_path: Path) -> None:
    total = sum(b.num_sequences for _, b in _episodes("toy/a", 7, 3))
    shards = _write_direct(str(tmp_path), rows_per_shard=5, row_group_rows=2)
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
    one = _write_direct(str(tmp_path / "one"), rows_per_shard=4, row_group_rows=3)
    two = _write_direct(str(tmp_path / "two"), rows_per_shard=4, row_group_rows=3)
    assert one == two


def test_finalize_removes_orphans_refuses_duplicates_and_is_idempotent(tmp_path: Path) -> None:
    out = str(tmp_path)
    orphan = tmp_path / TMP_DIR / SEQUENCES_DIR / "deadbeef" / "sequences" / "x.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a shard")
    entries = _write_stream(WriteOptions(out, rows_per_shard=100), "t", 0, 2)
    with pytest.raises(ValueError, match="shards written twice"):
        finalize_shards(out, entries + entries, kind=SEQUENCES_DIR)
    first = finalize_shards(out, entries, kind=SEQUENCES_DIR)
    assert not orphan.exists()
    assert finalize_shards(out, entries, kind=SEQUENCES_DIR) == first  # a retried finalize
    assert finalize_shards(out, entries, kind=REJECTS_DIR) == []


def _job(out: str, runner: str, options: PipelineOptions | None = None, *, task: str = "toy/a") -> dict:
    write_options = WriteOptions(out, rows_per_shard=6, row_group_rows=4)
    rejects = [
        Reject("toy", task, "3-1", "file-3", "non_finite", "observation/x", "NaN at t=2"),
        Reject("toy", task, None, "file-9", "corrupt_record", None, "truncated"),
        Reject("toy", task, "1-0", "file-1", "discrete_out_of_range", "action", "5000"),
    ]
    with TestPipeline(runner=runner, options=options) as p:
        items = p | "WorkItems" >> beam.Create([0, 1, 2, 3])
        # One work item expands to its episodes, as the reader does.
        rows = items | "Read" >> beam.FlatMap(lambda w: _episodes(task, w, 3))
        shards = (rows | "Write" >> beam.ParDo(WriteShards(write_options, SCHEMA))
                  | "Finalize" >> FinalizeShards(out, kind=SEQUENCES_DIR))
        reject_shards = (p | "Rejects" >> beam.Create(rejects)
                         | "WriteRejects" >> WriteRejects(write_options)
                         | "FinalizeRejects" >> FinalizeShards(out, kind=REJECTS_DIR))
        _ = (shards | "Manifest" >> beam.Map(
            lambda s, r: write_manifest(out, build_manifest(
                config={"seed": 5}, layout=GATO, fields=FIELDS, sequence_length=L,
                shards=s, rejects=r, dataset_weights={"toy": None})),
            r=beam.pvalue.AsSingleton(reject_shards)))
    return read_manifest(out)


def test_beam_job_output_reads_everywhere_and_matches_the_manifest(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    manifest = _job(out, "BundleBasedDirectRunner")
    shards = manifest[M_SHARDS]
    assert {s["path"].rsplit("-", 2)[1] for s in shards} == {"00000", "00001", "00002", "00003"}
    files = [os.path.join(out, s["path"]) for s in shards]
    rows, tokens = sum(s["rows"] for s in shards), sum(s["tokens"] for s in shards)
    expected = [b for w in range(4) for _, b in _episodes("toy/a", w, 3)]
    assert rows == sum(b.num_sequences for b in expected)
    assert tokens == sum(b.total_tokens for b in expected)
    assert not os.path.exists(os.path.join(out, TMP_DIR))

    table = pq.read_table(files)
    assert table.num_rows == rows
    assert pa.compute.sum(table["num_tokens"]).as_py() == tokens
    # Row order: work item, then episode, then sequence index.
    order = list(zip(table["episode_id"].to_pylist(), table["sequence_index"].to_pylist()))
    assert order == [(b.episode_id, s) for b in expected for s in range(b.num_sequences)]
    assert all(len(t) == L for t in table["tokens"].to_pylist())

    import duckdb
    glob = os.path.join(out, "sequences", "**", "*.parquet")
    con = duckdb.connect()
    n, toks, lengths = con.execute(
        f"select count(*), sum(num_tokens), min(len(tokens)) from read_parquet('{glob}')"
    ).fetchone()
    assert (n, toks, lengths) == (rows, tokens, L)

    import polars as pl
    frame = pl.read_parquet(files)
    assert frame.height == rows and int(frame["num_tokens"].sum()) == tokens
    assert frame["tokens"].list.len().unique().to_list() == [L]

    import datasets
    ds = datasets.load_dataset("parquet", data_files=files, split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == rows and sum(ds["num_tokens"]) == tokens
    first = ds[0]
    assert len(first["tokens"]) == L and first["dataset"] == "toy"

    [reject_shard] = manifest[M_REJECTS]
    assert reject_shard["path"] == "rejects/toy/toy__a/part-00000-000.parquet"
    rejects = pq.read_table(os.path.join(out, reject_shard["path"]))
    assert rejects.schema.equals(REJECTS_SCHEMA)
    assert rejects["source_file"].to_pylist() == ["file-1", "file-3", "file-9"]
    assert rejects["reason"].to_pylist() == ["discrete_out_of_range", "non_finite", "corrupt_record"]
    assert rejects["episode_id"].to_pylist() == ["1-0", "3-1", None]


def test_hostile_names_stay_under_the_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = _job(str(out), "BundleBasedDirectRunner", task="../../escape/\x00x")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(out in p.parents for p in written)
    assert all(".." not in s["path"].split("/") for s in manifest[M_SHARDS])
    table = pq.read_table([str(out / s["path"]) for s in manifest[M_SHARDS]])
    assert set(table["task"].to_pylist()) == {"../../escape/\x00x"}  # the name itself survives


def test_two_workers_in_multi_processing_give_identical_shards(tmp_path: Path) -> None:
    local = _job(str(tmp_path / "local"), "BundleBasedDirectRunner")
    multi = _job(
        str(tmp_path / "multi"), "DirectRunner",
        PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing"),
    )
    assert local[M_SHARDS] == multi[M_SHARDS] and local[M_REJECTS] == multi[M_REJECTS]
    assert json.dumps(local, sort_keys=True) == json.dumps(multi, sort_keys=True)


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

    shards = _write_direct(str(tmp_path), rows_per_shard=4, row_group_rows=3)
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
    entries = _write_stream(options, "t", 0, 2)
    rows = sum(b.num_sequences for _, b in _episodes("t", 0, 2))
    assert [e.rows for e in entries] == [2] * (rows // 2) + ([1] if rows % 2 else [])
    with pytest.raises(ValueError, match="must be >= 1"):
        WriteOptions(str(tmp_path), row_group_rows=0)


def test_the_project_reader_streams_the_written_output(tmp_path: Path) -> None:
    from reader import GatoReader, ReaderOptions

    out = str(tmp_path / "out")
    manifest = _job(out, "BundleBasedDirectRunner")
    rows = sum(s["rows"] for s in manifest[M_SHARDS])
    reader = GatoReader(out, ReaderOptions(exhausted="drop", num_epochs=1, prefetch=0, shuffle_buffer=8))
    seen = 0
    with reader.batches(4) as stream:
        for batch in stream:
            assert batch["tokens"].shape[1] == L
            image_tokens = (batch["modality"] == Modality.IMAGE).sum(axis=1)
            assert (batch["patch_mask"].sum(axis=1) == image_tokens).all()
            seen += batch["tokens"].shape[0]
    assert seen == rows


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


def test_a_rerun_after_a_crash_lists_no_partial_shard(tmp_path: Path) -> None:
    from formats.output_dir import prepare_output_dir

    out = tmp_path / "out"
    first = _job(str(out), "BundleBasedDirectRunner")
    # A crash while finalizing a later run: manifest gone, a half-moved shard, temporaries.
    (out / "manifest.json").unlink()
    partial = out / "sequences" / "toy" / "toy__a" / "part-00009-000.parquet"
    partial.write_bytes(b"PAR1 half")
    (out / TMP_DIR / SEQUENCES_DIR / "dead").mkdir(parents=True)
    prepare_output_dir(str(out), overwrite=False)
    again = _job(str(out), "BundleBasedDirectRunner")
    assert again == first
    assert not partial.exists() and not (out / TMP_DIR).exists()
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert on_disk == sorted(s["path"] for s in again[M_SHARDS] + again[M_REJECTS])
