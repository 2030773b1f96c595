"""reader/sharding.py: in global step s rank r takes samples [s*W*B + r*B, s*W*B + (r+1)*B),
data-loader workers take the steps round robin, and the consumed count is the state."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reader.sharding import Consumer


def _take(consumer: Consumer, start: int, n: int) -> list[tuple[int, int, int]]:
    return list(itertools.islice(consumer.steps(start), n))


def test_exact_batches_of_each_rank_and_worker() -> None:
    # B = 4, world size 3: a global step holds 12 samples.
    assert Consumer(4, rank=0, world_size=3).step_size == 12
    assert _take(Consumer(4, rank=0, world_size=3), 0, 3) == [(0, 0, 4), (12, 12, 16), (24, 24, 28)]
    assert _take(Consumer(4, rank=2, world_size=3), 0, 2) == [(0, 8, 12), (12, 20, 24)]
    # Two data-loader workers of rank 1: worker 0 builds steps 0, 2, 4...; worker 1 steps 1, 3, 5...
    assert _take(Consumer(4, rank=1, world_size=3, worker=0, num_workers=2), 0, 2) == [(0, 4, 8), (24, 28, 32)]
    assert _take(Consumer(4, rank=1, world_size=3, worker=1, num_workers=2), 0, 2) == [(12, 16, 20), (36, 40, 44)]


def test_the_resume_position_shifts_every_batch() -> None:
    assert _take(Consumer(2, rank=1, world_size=2), 7, 2) == [(7, 9, 11), (11, 13, 15)]
    assert Consumer(2, rank=1, world_size=2).position_after(7, 0) == 7
    assert Consumer(2, rank=1, world_size=2).position_after(7, 3) == 19


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9), st.integers(1, 5), st.integers(1, 4), st.integers(0, 1000), st.integers(1, 6))
def test_all_consumers_cover_the_stream_once_in_order(
    batch: int, world: int, workers: int, start: int, steps_each: int
) -> None:
    seen: list[int] = []
    for rank in range(world):
        for worker in range(workers):
            c = Consumer(batch, rank=rank, world_size=world, worker=worker, num_workers=workers)
            for step_start, lo, hi in _take(c, start, steps_each):
                assert hi - lo == batch
                assert lo == step_start + rank * batch  # rank r's slice of its step
                assert (step_start - start) // c.step_size % workers == worker
                seen.extend(range(lo, hi))
    total = world * workers * steps_each * batch
    # Disjoint and gap-free: exactly the samples [start, start + total).
    assert sorted(seen) == list(range(start, start + total))
    # Once every rank consumed n batches, exactly the first n * W * B samples are used.
    n = workers * steps_each
    assert Consumer(batch, world_size=world).position_after(start, n) == start + total


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, r"batch_size must be >= 1, got 0"),
        ({"batch_size": 2, "rank": 2, "world_size": 2}, r"rank 2 is not in \[0, world_size=2\)"),
        ({"batch_size": 2, "rank": -1}, r"rank -1 is not in \[0, world_size=1\)"),
        ({"batch_size": 2, "worker": 3, "num_workers": 3}, r"worker 3 is not in \[0, num_workers=3\)"),
        ({"batch_size": 2, "worker": -1}, r"worker -1 is not in \[0, num_workers=1\)"),
    ],
)
def test_invalid_consumers_are_refused(kwargs: dict, message: str) -> None:
    batch = kwargs.pop("batch_size")
    with pytest.raises(ValueError, match=message):
        Consumer(batch, **kwargs)


def test_rank_and_workers_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Consumer(4, 1)  # type: ignore[misc]
