"""End-to-end streaming: content, partition without overlap, exact resume across world sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reader import GLOBAL_INDEX, PATCH_MASK, SOURCE, GatoReader, ReaderOptions
from schemas import output as out
from schemas.vocab import GATO, Modality
from tests.reader.reader_fixtures import (
    default_patch_count,
    episode_id,
    expected_tokens,
    write_output,
)

SOURCES = {("atari", "pong"): 45, ("atari", "breakout"): 30, ("control", "walker"): 60}
LENGTH = 32


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_output(tmp_path_factory.mktemp("out"), SOURCES, length=LENGTH, row_group_size=8, rows_per_shard=20)


def _ids(batches: list[dict]) -> dict[int, str]:
    """global index -> episode id of every sample in the batches."""
    result: dict[int, str] = {}
    for b in batches:
        for g, e in zip(b[GLOBAL_INDEX].tolist(), b[out.EPISODE_ID].tolist()):
            assert g not in result
            result[g] = e
    return result


def _take(stream, n: int) -> list[dict]:
    batches = [next(stream) for _ in range(n)]
    return batches


def _check_rows_match_their_ids(reader: GatoReader, b: dict, batch_size: int) -> None:
    """Every row's content is the fixture row its episode id names (see reader_fixtures)."""
    names = [f"{s.dataset}|{s.task}" for s in reader.sources]
    assert b[out.TOKENS].shape == (batch_size, LENGTH) and b[out.TOKENS].dtype == np.int32
    assert b[out.MODALITY].dtype == np.int8 and b[out.LOSS_MASK].dtype == bool
    assert b[out.LOCAL_POSITIONS].dtype == np.int16 and b[out.IS_PROMPT].dtype == bool
    width = b[PATCH_MASK].shape[1]
    assert b[out.PATCH_PIXELS].shape == (batch_size, width, 16, 16, 3)
    for row in range(batch_size):
        eid = b[out.EPISODE_ID][row]
        assert eid.startswith(names[b[SOURCE][row]] + "|")
        i = int(eid.rsplit("|", 1)[1])
        assert b[out.SEQUENCE_INDEX][row] == i
        num_tokens = max(1, LENGTH - 1 - i % 4)
        patches = default_patch_count(i)
        expected = expected_tokens(i, LENGTH, num_tokens)
        expected[:patches] = GATO.image_placeholder
        assert np.array_equal(b[out.TOKENS][row], expected)
        assert (b[out.MODALITY][row, :patches] == Modality.IMAGE).all()
        assert b[PATCH_MASK][row].tolist() == [k < patches for k in range(width)]
        for k in range(width):
            value = (i + k) % 256 if k < patches else 0
            assert (b[out.PATCH_PIXELS][row, k] == value).all()
            assert b[out.PATCH_POSITIONS][row, k].tolist() == ([k, k + 1, 0, 127] if k < patches else [0, 0, 0, 0])


def test_batch_rows_are_the_rows_they_claim(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=3, shuffle_buffer=16, prefetch=2))
    with reader.batches(8) as stream:
        for b in _take(stream, 10):
            _check_rows_match_their_ids(reader, b, 8)


def test_a_tiny_source_repeats_many_epochs_within_one_batch(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("big", "t"): 40, ("tiny", "t"): 3}, length=LENGTH)
    reader = GatoReader(root, ReaderOptions(seed=2, dataset_weights={"big": 0.5, "tiny": 0.5}, prefetch=0))
    for b in _take(reader.batches(64), 3):
        _check_rows_match_their_ids(reader, b, 64)
        tiny = [e for e in b[out.EPISODE_ID] if e.startswith("tiny")]
        assert len(tiny) > 9  # several epochs of the 3-row source in one batch


def test_normalized_patches_and_grayscale_promotion(tmp_path: Path) -> None:
    root = write_output(
        tmp_path, {("gray", "t"): 10}, length=16, channels=1, patch_count=lambda i: 1 + i % 2
    )
    raw = next(GatoReader(root, ReaderOptions(prefetch=0)).batches(10))
    norm = next(GatoReader(root, ReaderOptions(prefetch=0, normalize_images=True)).batches(10))
    assert raw[out.PATCH_PIXELS].shape == (10, 2, 16, 16, 3)  # 1 channel repeated to 3
    assert norm[out.PATCH_PIXELS].dtype == np.float32
    p = raw[out.PATCH_PIXELS].astype(np.float64)
    expected = np.where(raw[PATCH_MASK][:, :, None, None, None], ((p / 255) * 2 - 1) / 4, 0.0)
    np.testing.assert_allclose(norm[out.PATCH_PIXELS], expected, rtol=0, atol=1e-7)
    assert norm[out.PATCH_PIXELS].min() >= -0.25 and norm[out.PATCH_PIXELS].max() <= 0.25
    fixed = next(GatoReader(root, ReaderOptions(prefetch=0, max_patches=5)).batches(10))
    assert fixed[out.PATCH_PIXELS].shape == (10, 5, 16, 16, 3)
    with pytest.raises(ValueError, match="more than max_patches=1"):
        next(GatoReader(root, ReaderOptions(prefetch=0, max_patches=1)).batches(10))
    single = next(GatoReader(root, ReaderOptions(prefetch=0, image_channels=1)).batches(10))
    assert single[out.PATCH_PIXELS].shape == (10, 2, 16, 16, 1)
    rgb = write_output(tmp_path / "rgb", {("rgb", "t"): 4}, length=16, channels=3)
    with pytest.raises(ValueError, match="image patches have 3 channels, the reader was asked for 4"):
        next(GatoReader(rgb, ReaderOptions(prefetch=0, image_channels=4)).batches(4))


def test_epoch_has_no_duplicates_across_ranks_and_workers(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=11, shuffle_buffer=16, exhausted="drop", num_epochs=1))
    world, workers, batch = 2, 2, 4
    seen: list[str] = []
    globals_: list[int] = []
    per_rank = []
    for rank in range(world):
        count = 0
        for worker in range(workers):
            with reader.batches(batch, rank=rank, world_size=world, worker=worker, num_workers=workers) as s:
                for b in s:
                    count += 1
                    seen.extend(b[out.EPISODE_ID].tolist())
                    globals_.extend(b[GLOBAL_INDEX].tolist())
        per_rank.append(count)
    total = sum(SOURCES.values())  # 135 rows in row groups of at most 8
    assert len(set(per_rank)) == 1  # every rank stops after the same batch
    assert len(seen) == len(set(seen)) == len(set(globals_)) == per_rank[0] * world * batch
    # Ranks own within one row group of each other: what is left is less than that plus a batch each.
    assert total - len(seen) < world * (8 + batch)
    every = {episode_id(d, t, i) for (d, t), n in SOURCES.items() for i in range(n)}
    assert set(seen) <= every


def test_repeat_mode_epochs_of_each_source_have_no_duplicates(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=4, shuffle_buffer=16, prefetch=0))
    n = 600
    draws = reader.mixture.take(reader.mixture.initial(), n)
    batches = _take(reader.batches(50), n // 50)
    ids = _ids(batches)
    for s, source in enumerate(reader.sources):
        sel = np.flatnonzero(draws.source == s)
        for epoch in np.unique(draws.epoch[sel]):
            in_epoch = [ids[int(g)] for g in sel[draws.epoch[sel] == epoch]]
            assert len(in_epoch) == len(set(in_epoch))
            if (draws.epoch[sel] > epoch).any():  # a completed epoch holds every row
                assert len(in_epoch) == source.rows


def test_empirical_mixture_matches_weights(output_dir: str) -> None:
    weights = {"atari": 0.7, "control": 0.3}
    tasks = {("atari", "pong"): 1, ("atari", "breakout"): 3}
    options = ReaderOptions(seed=2, shuffle_buffer=16, dataset_weights=weights, task_weights=tasks)
    reader = GatoReader(output_dir, options)
    with reader.batches(100) as stream:
        sources = np.concatenate([b[SOURCE] for b in _take(stream, 40)])
    names = [s.key for s in reader.sources]
    freq = {k: float(np.mean(sources == i)) for i, k in enumerate(names)}
    expected = {("atari", "breakout"): 0.525, ("atari", "pong"): 0.175, ("control", "walker"): 0.3}
    # n = 4000: binomial std <= 0.0079; tolerance 0.035 is > 4 sigma.
    for key, p in expected.items():
        assert abs(freq[key] - p) < 0.035, (key, freq[key], p)


@given(st.integers(0, 12), st.sampled_from([0, 2]))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_save_and_restore_anywhere_gives_the_same_stream(output_dir: str, split: int, prefetch: int) -> None:
    options = ReaderOptions(seed=7, shuffle_buffer=16, exhausted="drop", prefetch=prefetch)
    reader = GatoReader(output_dir, options)
    uninterrupted = _ids(_take(reader.batches(6), 14))
    first = reader.batches(6)
    before = _take(first, split)
    state = first.state()
    first.close()
    assert state["position"] == 6 * split
    resumed = GatoReader(output_dir, options).batches(6, state=state)
    after = _take(resumed, 14 - split)
    resumed.close()
    combined = _ids(before + after)
    assert combined == uninterrupted
    # Contents too, not only ids.
    ref = {int(g): row for b in _take(reader.batches(6), 14) for g, row in zip(b[GLOBAL_INDEX], b[out.TOKENS])}
    for b in after:
        for g, row in zip(b[GLOBAL_INDEX], b[out.TOKENS]):
            assert np.array_equal(ref[int(g)], row)


@pytest.mark.parametrize("exhausted", ["repeat", "drop"])
def test_world_size_two_to_four_continues_the_global_stream(output_dir: str, exhausted: str) -> None:
    # 272+ samples of 135 rows: both policies cross epoch boundaries (drop: global epochs).
    options = ReaderOptions(seed=5, shuffle_buffer=16, exhausted=exhausted)
    reference = _ids(_take(GatoReader(output_dir, options).batches(8), 60))
    reader = GatoReader(output_dir, options)
    # World size 2, per-rank batch 8: both ranks consume 7 batches, then "preempted".
    ranks = [reader.batches(8, rank=r, world_size=2) for r in range(2)]
    before = [_take(s, 7) for s in ranks]
    states = [s.state() for s in ranks]
    for s in ranks:
        s.close()
    assert states[0] == states[1]
    for batches in before:  # each rank reads its own samples in global order
        index = [g for b in batches for g in b[GLOBAL_INDEX].tolist()]
        assert index == sorted(index)
    # Restore at world size 4 with per-rank batch 4, once with the snapshot and once from the position only.
    for state in (states[0], {k: v for k, v in states[0].items() if k != "mixture"}):
        restored = GatoReader(output_dir, options)
        after = [_take(restored.batches(4, rank=r, world_size=4, state=state), 10) for r in range(4)]
        combined = _ids(before[0] + before[1] + [b for batches in after for b in batches])  # no sample twice
        assert len(combined) == 112 + 160
        assert combined == {g: reference[g] for g in combined}  # each is the global stream's sample g
        saved = restored.state_after(state, batches=10, batch_size=4, world_size=4)
        assert set(range(saved["position"])) <= set(combined)  # nothing before the frontier skipped


def test_state_of_another_stream_is_refused(output_dir: str) -> None:
    state = GatoReader(output_dir, ReaderOptions(seed=1)).initial_state()
    with pytest.raises(ValueError, match="belongs to another stream"):
        GatoReader(output_dir, ReaderOptions(seed=2)).batches(4, state=state)
    with pytest.raises(ValueError, match="not a reader state of version 1 or 2"):
        GatoReader(output_dir, ReaderOptions(seed=1)).batches(4, state={"position": 3})


def test_stream_ends_after_num_epochs_and_drops_a_partial_last_step(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(exhausted="drop", num_epochs=2, prefetch=0))
    batches = list(reader.batches(10))
    assert len(batches) == (2 * 135) // 10


def test_read_errors_reach_the_training_loop(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("d", "t"): 16}, row_group_size=8)
    # Checksums off: this is the Parquet read-error path (test_checksum covers digests).
    reader = GatoReader(root, ReaderOptions(shuffle_buffer=4, verify_checksums=False))
    shard = Path(root, "sequences", "d", "t", "part-00000.parquet")
    shard.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")  # corrupted after the index was built
    with pytest.raises(ValueError, match=r"part-00000.parquet row group \d: cannot read"):
        next(reader.batches(4))


def test_prefetch_and_inline_reading_yield_the_same_batches(output_dir: str) -> None:
    a = _ids(_take(GatoReader(output_dir, ReaderOptions(seed=8, prefetch=0)).batches(16), 6))
    b = _ids(_take(GatoReader(output_dir, ReaderOptions(seed=8, prefetch=3)).batches(16), 6))
    assert a == b


def test_zero_weight_sources_are_never_read(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(dataset_weights={"atari": 0.0}))
    assert [s.key for s in reader.sources] == [("control", "walker")]
    batch = next(reader.batches(32))
    assert all(e.startswith("control|walker|") for e in batch[out.EPISODE_ID])


def test_several_outputs_mix_and_a_shared_source_merges(tmp_path: Path) -> None:
    a = write_output(
        tmp_path / "a",
        {("atari", "pong"): 12, ("control", "walker"): 10},
        weights={"atari": {"weight": 0.5}, "control": {"weight": 0.5}},
    )
    b = write_output(
        tmp_path / "b",
        {("atari", "pong"): 12, ("dmlab", "x"): 6},
        weights={"atari": {"weight": 0.5}, "dmlab": {"weight": 0.25}},
    )
    reader = GatoReader([a, b], ReaderOptions(exhausted="drop", num_epochs=1, prefetch=0))
    assert [(s.key, s.rows) for s in reader.sources] == [
        (("atari", "pong"), 24),
        (("control", "walker"), 10),
        (("dmlab", "x"), 6),
    ]
    np.testing.assert_allclose(reader.weights, [0.4, 0.4, 0.2])
    ids = [e for b in reader.batches(4) for e in b[out.EPISODE_ID]]
    assert len(ids) == 40
    # Both outputs' pong rows (same ids, different files) are read, each once.
    pong = sorted(e for e in ids if e.startswith("atari"))
    assert pong == sorted(2 * [episode_id("atari", "pong", i) for i in range(12)])


def test_reads_through_any_fsspec_filesystem(tmp_path: Path) -> None:
    import fsspec

    local = write_output(tmp_path, {("d", "t"): 20})
    memory = fsspec.filesystem("memory")
    memory.put(local, "/reader-test-out", recursive=True)
    try:
        remote = _ids(_take(GatoReader("memory://reader-test-out", ReaderOptions(seed=1, prefetch=0)).batches(5), 8))
        expected = _ids(_take(GatoReader(local, ReaderOptions(seed=1, prefetch=0)).batches(5), 8))
    finally:
        memory.rm("/reader-test-out", recursive=True)
    assert remote == expected


def test_weighted_source_without_rows_is_left_out_with_a_warning(tmp_path: Path) -> None:
    root = write_output(tmp_path, {("a", "x"): 8, ("b", "empty"): 0})
    with pytest.warns(UserWarning, match=r"\('b', 'empty'\)\] have a sampling weight but no rows"):
        reader = GatoReader(root)
    assert [s.key for s in reader.sources] == [("a", "x")] and reader.weights.tolist() == [1.0]
    assert reader.empty_sources == (("b", "empty"),)


def test_a_saved_state_with_a_bad_field_is_a_value_error_naming_it(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(prefetch=0))
    stream = reader.batches(4)
    next(stream)
    saved = stream.state()
    cases = [
        ({**saved, "mixture": {k: v for k, v in saved["mixture"].items() if k != "counts"}}, r"mixture\.counts is missing"),
        ({**saved, "mixture": {**saved["mixture"], "active": "yes"}}, r"mixture\.active 'yes' is not a list"),
        ({**saved, "mixture": 7}, "reader state mixture 7 is not an object"),
        ({**saved, "mixture": {**saved["mixture"], "counts": [0, 0, 0]}}, r"mixture\.counts sum to 0, but 4 draws"),
        ({"version": 1, "fingerprint": saved["fingerprint"], "position": 2**64}, r"position 18446744073709551616 is above"),
        ({"version": 1, "fingerprint": saved["fingerprint"], "position": 2**62}, r"position 4611686018427387904 needs"),
        ({"version": 1, "fingerprint": saved["fingerprint"], "position": 2**40}, r"position 1099511627776 needs"),
    ]
    for state, message in cases:
        with pytest.raises(ValueError, match=message):
            reader.check_state(state)
        with pytest.raises(ValueError, match=message):
            reader.batches(4, state=state)
    reader.check_state(saved)
