"""reader/sharding.py: row groups are dealt round robin to ranks, continuing across sources
and epochs, so each rank owns within one row group of its share; data-loader workers
take a rank's batches round robin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reader.index import Source
from reader.sharding import Consumer, Deal


def _sources(units: list[int]) -> list[Source]:
    return [Source("d", f"t{i}", np.arange(n, dtype=np.int64), 8 * n) for i, n in enumerate(units)]


def test_the_deal_continues_across_sources_and_epochs() -> None:
    deal = Deal.of(_sources([3, 2]))
    assert deal.base.tolist() == [0, 3] and deal.units.tolist() == [3, 2]
    places3, places2 = np.arange(3), np.arange(2)
    assert deal.owner(0, 0, places3, 2).tolist() == [0, 1, 0]
    assert deal.owner(1, 0, places2, 2).tolist() == [1, 0]  # source 1 starts where source 0 ended
    assert deal.owner(0, 1, places3, 2).tolist() == [1, 0, 1]  # epoch 1 of source 0 continues its deal
    assert deal.owner(0, 5, places3, 1).tolist() == [0, 0, 0]  # one rank owns everything


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=5), st.integers(1, 9), st.integers(1, 4))
def test_every_unit_has_one_owner_and_ranks_own_within_one_unit_of_a_fair_share(
    units: list[int], world: int, epochs: int
) -> None:
    deal = Deal.of(_sources(units))
    owned = np.zeros(world, dtype=np.int64)
    for s, n in enumerate(units):
        per_source = np.zeros(world, dtype=np.int64)
        for e in range(epochs):
            owners = deal.owner(s, e, np.arange(n), world)
            assert ((owners >= 0) & (owners < world)).all()
            per_source += np.bincount(owners, minlength=world)
        # A source's units, over any number of its epochs, go round robin.
        assert per_source.max() - per_source.min() <= 1
        owned += per_source
    if epochs == 1:
        assert owned.max() - owned.min() <= 1  # and the deal continues across sources


def test_workers_build_their_ranks_batches_round_robin() -> None:
    workers = [Consumer(4, rank=1, world_size=3, worker=k, num_workers=2) for k in range(2)]
    assert [n for n in range(6) if workers[0].builds(n)] == [0, 2, 4]
    assert [n for n in range(6) if workers[1].builds(n)] == [1, 3, 5]


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
