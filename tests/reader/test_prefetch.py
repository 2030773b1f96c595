"""Background read-ahead: order kept, bounded, errors re-raised in the consumer, closable."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from reader.prefetch import Prefetcher


def test_items_arrive_in_order_and_end() -> None:
    assert list(Prefetcher(lambda: iter(range(100)), depth=3)) == list(range(100))


def test_producer_runs_at_most_depth_items_ahead() -> None:
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for i in itertools.count():
            produced.append(i)
            yield i

    p = Prefetcher(produce, depth=4)
    assert next(p) == 0
    time.sleep(0.3)
    # One taken, four queued, one more produced and blocked on the full queue.
    assert len(produced) == 1 + 4 + 1
    p.close()
    assert not p._thread.is_alive()


def test_producer_error_is_raised_where_its_item_would_arrive() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("shard x row group 3: cannot read")

    p = Prefetcher(produce, depth=2)
    assert [next(p), next(p)] == [1, 2]
    with pytest.raises(ValueError, match="row group 3"):
        next(p)
    with pytest.raises(StopIteration):
        next(p)


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth must be >= 1"):
        Prefetcher(lambda: iter(()), depth=0)
