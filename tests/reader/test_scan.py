"""reader/scan.py: ranks read disjoint samples of the one global stream, each in global
order, all yield the same number of batches, and a saved state (frontier + tail) resumes
with every sample read exactly once, at the same or another world size and batch size."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reader import GatoReader, ReaderOptions
from tests.reader.reader_fixtures import write_output

SOURCES = {("a", "x"): 45, ("a", "y"): 30, ("b", "z"): 60}


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_output(tmp_path_factory.mktemp("out"), SOURCES, length=8, row_group_size=8, rows_per_shard=20)


def _run(reader: GatoReader, state: dict | None, *, world: int, batch: int, n: int) -> tuple[list[list], dict]:
    """Every rank's first n batches from `state` as (global index, source, epoch, cursor) rows,
    and the state saved after them (the same on every rank)."""
    per_rank, saved = [], []
    for rank in range(world):
        rows, after = [], reader.state_after(state, batches=0, batch_size=batch, world_size=world)
        for item in reader.walk(state, world_size=world).batches(batch, rank=rank):
            if item.number == n:
                break
            d = item.draws
            rows += list(zip(item.global_index.tolist(), d.source.tolist(), d.epoch.tolist(), d.cursor.tolist()))
            after = reader._state(item.after)
        per_rank.append(rows)
        saved.append(json.loads(json.dumps(after)))  # states travel as JSON
    assert all(s == saved[0] for s in saved)
    assert saved[0] == reader.state_after(state, batches=n, batch_size=batch, world_size=world)
    return per_rank, saved[0]


def _reference(reader: GatoReader, n: int) -> dict[int, tuple[int, int, int]]:
    d = reader.mixture.take(reader.mixture.initial(), n)
    return {g: (s, e, c) for g, s, e, c in zip(range(n), d.source.tolist(), d.epoch.tolist(), d.cursor.tolist())}


_LEG = st.tuples(st.integers(1, 5), st.integers(1, 7), st.integers(0, 6))  # world size, batch size, batches


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_LEG, min_size=1, max_size=4), st.sampled_from(["repeat", "drop"]))
def test_resuming_at_any_world_and_batch_size_reads_every_sample_once(
    output_dir: str, legs: list[tuple[int, int, int]], exhausted: str
) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=3, shuffle_buffer=16, exhausted=exhausted))
    reference = _reference(reader, 2000)
    state, seen = None, []
    for world, batch, n in legs:
        per_rank, state = _run(reader, state, world=world, batch=batch, n=n)
        assert len({len(rows) for rows in per_rank}) == 1  # every rank the same number of batches
        for rows in per_rank:
            index = [r[0] for r in rows]
            assert index == sorted(index)  # a rank reads its samples in global order
            for g, *draw in rows:
                assert reference[g] == tuple(draw)  # the sample is the global stream's sample g
            seen += index
    assert len(seen) == len(set(seen))  # never a sample twice, over every resume
    # Every sample before the frontier was read; past it, exactly those the tail marks.
    frontier = state["position"]
    assert set(range(frontier)) <= set(seen)
    assert all(g < max([frontier] + [e for t in state.get("tail", []) for e in t["ends"]]) for g in seen)


def test_same_world_size_resumes_the_uninterrupted_batches(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=4, shuffle_buffer=16))
    whole, _ = _run(reader, None, world=3, batch=5, n=9)
    first, state = _run(reader, None, world=3, batch=5, n=4)
    rest, _ = _run(reader, state, world=3, batch=5, n=5)
    assert [a + b for a, b in zip(first, rest)] == whole


def test_ranks_read_only_their_own_row_groups(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=1, shuffle_buffer=32))
    owners: dict[tuple[int, int], set[int]] = {}  # (epoch, unit) -> ranks that read it
    world = 4
    for rank in range(world):
        for item in reader.walk(None, world_size=world).batches(8, rank=rank):
            if item.number == 20:
                break
            d = item.draws
            for s in np.unique(d.source):
                sel = d.source == s
                for e in np.unique(d.epoch[sel]):
                    units, _, _ = reader.plan_cache().get(int(s), int(e)).locate(d.cursor[sel & (d.epoch == e)])
                    for u in units.tolist():
                        owners.setdefault((int(e), u), set()).add(rank)
    assert all(len(ranks) == 1 for ranks in owners.values())


def test_a_finite_stream_ends_for_every_rank_after_the_same_batch(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=2, shuffle_buffer=16, exhausted="drop", num_epochs=1))
    world, batch = 3, 4
    counts, seen = [], []
    for rank in range(world):
        items = list(reader.walk(None, world_size=world).batches(batch, rank=rank))
        counts.append(len(items))
        seen += [g for item in items for g in item.global_index.tolist()]
    total = sum(SOURCES.values())
    assert len(set(counts)) == 1 and len(seen) == len(set(seen))
    # Ranks own within one row group (8 rows) of each other; the rest is < a batch each.
    assert total - len(seen) < world * (8 + batch)
