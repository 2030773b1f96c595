"""The one timing rule of the benchmarks: the fastest of a few runs counts, since other
work on a shared machine only ever slows a run down."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of `repeats` timed calls of `fn`, in seconds (wall time)."""
    return min(_timed(fn) for _ in range(max(1, repeats)))


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
