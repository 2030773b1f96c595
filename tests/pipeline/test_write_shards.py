"""pipeline/write_shards.py: the Beam write stages (WriteShards, WriteRejects, FinalizeShards)
in real pipelines: outputs every Parquet reader reads, safe names, identical shards with
two workers, a rerun after a crash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from formats.manifest import build_manifest, read_manifest, write_manifest
from formats.output_dir import manifest_entry, move_shard
from formats.parquet_shards import WriteOptions
from pipeline.write_shards import FinalizeShards, WriteRejects, WriteShards
from schemas.output import M_REJECTS, M_SHARDS, REJECTS_DIR, REJECTS_SCHEMA, SEQUENCES_DIR, TMP_DIR
from schemas.vocab import GATO, Modality
from tests.formats.shard_fixtures import FIELDS, L, SCHEMA, toy_episodes, write_stream
from tests.fs_spy import spy_on_files
from transforms.episode import Reject


def _job(out: str, runner: str, options: PipelineOptions | None = None, *, task: str = "toy/a",
         rejects: list[Reject] | None = None) -> dict:
    write_options = WriteOptions(out, rows_per_shard=6, row_group_rows=4)
    rejects = rejects or [
        Reject("toy", task, "3-1", "file-3", "non_finite", "observation/x", "NaN at t=2"),
        Reject("toy", task, None, "file-9", "corrupt_record", None, "truncated"),
        Reject("toy", task, "1-0", "file-1", "discrete_out_of_range", "action", "5000"),
    ]
    with TestPipeline(runner=runner, options=options) as p:
        items = p | "WorkItems" >> beam.Create([0, 1, 2, 3])
        # One work item expands to its episodes, as the reader does.
        rows = items | "Read" >> beam.FlatMap(lambda w: toy_episodes(task, w, 3))
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
    expected = [b for w in range(4) for _, b in toy_episodes("toy/a", w, 3)]
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


def test_two_runs_write_identical_rejects_shards_whatever_the_reprs_in_details(tmp_path: Path) -> None:
    # Issue 13, defect 12: a detail built from an exception can hold a repr with a memory
    # address (Pillow: "cannot identify image file <_io.BytesIO object at 0x7f...>").
    def rejects(holder: object) -> list[Reject]:
        return [Reject("toy", "toy/a", "2-0", "file-2", "corrupt_image", "observation/image",
                       f"image at index 0 cannot be decoded: UnidentifiedImageError: cannot identify "
                       f"image file {holder!r}"),
                Reject("toy", "toy/a", None, "file-9", "corrupt_record", None, "truncated")]

    holders = object(), object()  # alive at once: their reprs differ
    keep = rejects(holders[0]), rejects(holders[1])
    assert keep[0][0].detail != keep[1][0].detail
    one = _job(str(tmp_path / "one"), "BundleBasedDirectRunner", rejects=keep[0])
    two = _job(str(tmp_path / "two"), "BundleBasedDirectRunner", rejects=keep[1])
    assert one[M_REJECTS] == two[M_REJECTS] and one[M_REJECTS]
    for shard in one[M_REJECTS]:
        assert (tmp_path / "one" / shard["path"]).read_bytes() == (tmp_path / "two" / shard["path"]).read_bytes()
    details = pq.read_table(tmp_path / "one" / one[M_REJECTS][0]["path"]).column("detail").to_pylist()
    assert "cannot identify image file <object object>" in details[0]


def test_finalize_moves_each_shard_as_its_own_element_and_nothing_reads_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 14, item 4: the moves are one element per shard after the barrier, not a loop
    # on one worker; neither finalizing nor publishing reads a shard again (the manifest
    # has the writer's bytes and sha256).
    from pipeline import write_shards

    out = tmp_path / "out"
    spy = spy_on_files(monkeypatch)
    moved: list[str] = []
    real_move = write_shards.move_shard
    monkeypatch.setattr(write_shards, "move_shard", lambda o, e: moved.append(e.path) or real_move(o, e))
    manifest = _job(str(out), "BundleBasedDirectRunner")
    listed = manifest[M_SHARDS] + manifest[M_REJECTS]
    assert sorted(moved) == sorted(s["path"] for s in listed) and len(moved) > 4
    assert spy.read(".parquet") == []
    for shard in listed:
        payload = (out / shard["path"]).read_bytes()
        assert (shard["bytes"], shard["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())


def test_finalize_refuses_two_entries_with_one_final_path(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    entries = write_stream(WriteOptions(out, rows_per_shard=100), "toy/a", 0, 2)
    with pytest.raises(Exception, match=r"shards written twice: \['sequences/toy/toy__a/part-00000-000.parquet'\]"):
        with TestPipeline(runner="BundleBasedDirectRunner") as p:
            _ = p | beam.Create(entries + entries) | FinalizeShards(out, kind=SEQUENCES_DIR)
    # Nothing of the other kind is touched, and a retry after a partial move still finishes.
    first = move_shard(out, entries[0])
    assert move_shard(out, entries[0]) == first
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        listed = p | beam.Create(entries) | FinalizeShards(out, kind=SEQUENCES_DIR)
        assert_that(listed, equal_to([[manifest_entry(e) for e in entries]]))
    assert not (tmp_path / "out" / TMP_DIR / SEQUENCES_DIR).exists()
