"""Run a producer in a background thread, handing its items over a bounded queue.

The producer (reading row groups, decoding, assembling batches) runs ahead of the
consumer by at most `depth` items, so the training loop only waits when reading is
slower than training. pyarrow and numpy release the GIL for the heavy parts.
Invariants: items arrive in the producer's order; a producer exception is re-raised in
the consumer at the point the failed item would have arrived; `close()` stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_SECONDS = 0.1  # how often a blocked producer checks whether it was closed


class Prefetcher(Generic[T]):
    """Iterate `produce()` in a daemon thread, at most `depth` items ahead."""

    def __init__(self, produce: Callable[[], Iterator[T]], *, depth: int, name: str = "gato-reader") -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[], Iterator[T]]) -> None:
        try:
            for item in produce():
                if not self._put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(_Failure(e))
            return
        self._put(_DONE)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is _DONE:
            self._stop.set()
            raise StopIteration
        if isinstance(item, _Failure):
            self._stop.set()
            raise item.error
        return item  # type: ignore[return-value]

    def close(self, *, wait: bool = True) -> None:
        """Stop the producer thread (it notices within one poll or after its current item)."""
        self._stop.set()
        if wait:
            self._thread.join()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error
