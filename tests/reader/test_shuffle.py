"""Per-epoch read order: a bijection, bounded windows, different per epoch and seed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reader.index import Source
from reader.shuffle import EpochPlan


def _plan(unit_rows: list[int], *, buffer: int, epoch: int = 0, seed: int = 0) -> tuple[EpochPlan, np.ndarray]:
    rows = np.asarray(unit_rows, dtype=np.int64)
    source = Source("d", "t", np.arange(len(rows), dtype=np.int64), int(rows.sum()))
    return EpochPlan(source, unit_rows=rows, seed=seed, epoch=epoch, buffer=buffer), rows


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(1, 100), st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_locate_is_a_bijection_within_bounded_windows(unit_rows: list[int], buffer: int, epoch: int) -> None:
    plan, rows = _plan(unit_rows, buffer=buffer, epoch=epoch)
    units, within, windows = plan.locate(np.arange(rows.sum()))
    assert (within >= 0).all() and (within < rows[units]).all()
    pairs = set(zip(units.tolist(), within.tolist()))
    assert len(pairs) == rows.sum()  # every row exactly once
    sizes = np.diff(plan.window_start)
    assert (sizes < buffer + rows.max()).all()
    # A window's cursors read only that window's row groups, and windows come in order.
    assert windows.tolist() == sorted(windows.tolist())
    for w in np.unique(windows):
        assert len(set(units[windows == w].tolist()) & set(units[windows != w].tolist())) == 0


def test_order_changes_with_epoch_and_seed_but_not_otherwise() -> None:
    unit_rows = [8] * 10
    orders = {}
    for epoch, seed in [(0, 0), (1, 0), (0, 1)]:
        plan, rows = _plan(unit_rows, buffer=16, epoch=epoch, seed=seed)
        u, r, _ = plan.locate(np.arange(80))
        orders[(epoch, seed)] = (u * 8 + r).tolist()
    assert len({tuple(o) for o in orders.values()}) == 3
    plan, _ = _plan(unit_rows, buffer=16)
    u, r, _ = plan.locate(np.arange(80))
    assert (u * 8 + r).tolist() == orders[(0, 0)]
    # Locating cursors in any order or subset agrees with the full order.
    subset = np.array([79, 3, 40, 0])
    u, r, _ = plan.locate(subset)
    assert (u * 8 + r).tolist() == [orders[(0, 0)][c] for c in subset]


def test_buffer_of_one_shuffles_within_single_row_groups() -> None:
    plan, _ = _plan([4, 4, 4], buffer=1)
    u, r, w = plan.locate(np.arange(12))
    assert plan.num_windows == 3
    for window in range(3):
        assert len(set(u[w == window].tolist())) == 1
        assert sorted(r[w == window].tolist()) == [0, 1, 2, 3]
