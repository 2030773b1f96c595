"""One task's per-episode rows as compact columns: what the statistics stage accumulates.

The statistics (spec section 4) join, per task, every valid episode's return, the filter's
decision on it and, when kept, its tokenized size. As row tuples these cost ~730 bytes
an episode in memory (return ~380, decision ~140, kept ~200); as these columns ~240
(return ~170, most of it its order key tuple, decision ~25, kept ~45), and about half
that pickled, which is what a Beam combiner ships.

- `StringColumn`: strings as one UTF-8 buffer and end offsets (~8 bytes + the text each).
- `ReturnColumns`: (sort key, episode id, return) rows; the sort keys in a
  `transforms.expert_filter.TaskReturns` (order keys as given, files stored once).
- `DecisionColumns`: (episode id, kept, reason) rows; reasons stored once each.
- `KeptColumns`: (episode id, return, timesteps, tokens) rows.

Each has `add(*row)` (the row types of `transforms.books`, field by field), `merge(other)`
(appends: a Beam combiner merges partial accumulators in any order, and the checks never
depend on row order) and `of(rows)`. Pure Python and numpy; picklable.
"""

from __future__ import annotations

import array
from collections.abc import Iterable
from typing import Any

import numpy as np

from transforms.expert_filter import TaskReturns

# Ends every key of `StringColumn.keys`: numpy's fixed-width bytes drop trailing NULs, so
# without it "a" and "a\x00" would be one key.
_KEY_END = b"\x01"
_KEY_SLICE = 1 << 16


class StringColumn:
    """Strings in one UTF-8 buffer: string i is `data[ends[i-1]:ends[i]]`."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ends = array.array("q")

    def __len__(self) -> int:
        return len(self.ends)

    def append(self, text: str) -> None:
        self.data += text.encode("utf-8")
        self.ends.append(len(self.data))

    def extend(self, other: StringColumn) -> None:
        if len(other):
            self.ends.extend(array.array("q", (np.frombuffer(other.ends, np.int64) + len(self.data)).tobytes()))
            self.data += other.data

    def offsets(self) -> np.ndarray:
        """int64 [n + 1]: where each string starts, then the end of the last."""
        return np.concatenate([np.zeros(1, np.int64), np.frombuffer(self.ends, np.int64)])

    def text(self, index: int) -> str:
        start = self.ends[index - 1] if index else 0
        return self.data[start : self.ends[index]].decode("utf-8")

    def keys(self) -> np.ndarray:
        """Fixed-width bytes, one per string, equal exactly when the strings are equal
        (for joins with `np.unique`); ordered by UTF-8 bytes."""
        offsets = self.offsets()
        width = int(np.diff(offsets).max(initial=0)) + len(_KEY_END)
        keys = np.empty(len(self), dtype=f"S{width}")
        data = memoryview(self.data)
        # In slices: a list of a million bytes objects would cost ~50 MB on its own.
        for start in range(0, len(self), _KEY_SLICE):
            bounds = offsets[start : start + _KEY_SLICE + 1].tolist()
            keys[start : start + len(bounds) - 1] = [bytes(data[a:b]) + _KEY_END for a, b in zip(bounds, bounds[1:])]
        return keys


def key_text(key: bytes) -> str:
    """The string of a `StringColumn.keys` key."""
    return bytes(key)[: -len(_KEY_END)].decode("utf-8")


def text_keys(texts: Iterable[str]) -> np.ndarray:
    """`StringColumn.keys` of `texts`."""
    column = StringColumn()
    for text in texts:
        column.append(text)
    return column.keys()


class _Vocabulary:
    """Short strings that repeat (reason codes) stored once, referenced by index."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.index: dict[str, int] = {}

    def code(self, word: str) -> int:
        found = self.index.get(word)
        if found is None:
            found = self.index[word] = len(self.words)
            self.words.append(word)
        return found


class _Columns:
    """Rows of one kind, added field by field."""

    def add(self, *row: Any) -> None:
        raise NotImplementedError

    @classmethod
    def of(cls, rows: Iterable[tuple[Any, ...]]) -> Any:
        """The columns of `rows` (row tuples, in any order)."""
        columns = cls()
        for row in rows:
            columns.add(*row)
        return columns


class ReturnColumns(_Columns):
    """(sort key, episode id, return) rows of one task; a sort key is `EpisodeKey.sort_key()`,
    (order key, source file, record index), and the row's source file is the sort key's."""

    def __init__(self) -> None:
        self.returns = TaskReturns()
        self.ids = StringColumn()

    def __len__(self) -> int:
        return len(self.ids)

    def add(  # type: ignore[override]
        self, sort_key: tuple[Any, ...], episode_id: str, value: float, source_file: str | None = None
    ) -> None:
        if not isinstance(sort_key, tuple) or len(sort_key) != 3:
            raise ValueError(f"episode {episode_id!r}: sort key {sort_key!r} is not (order key, source file, record)")
        if source_file is not None and source_file != sort_key[1]:
            raise ValueError(f"episode {episode_id!r}: source file {source_file!r} is not its sort key's {sort_key[1]!r}")
        self.returns.add(sort_key, value)
        self.ids.append(episode_id)

    def merge(self, other: ReturnColumns) -> None:
        self.returns.merge(other.returns)
        self.ids.extend(other.ids)


class DecisionColumns(_Columns):
    """(episode id, kept, reason) rows of one task."""

    def __init__(self) -> None:
        self.ids = StringColumn()
        self.kept = bytearray()
        self.reason_codes = array.array("i")
        self.reasons = _Vocabulary()

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, episode_id: str, kept: bool, reason: str) -> None:  # type: ignore[override]
        self.ids.append(episode_id)
        self.kept.append(1 if kept else 0)
        self.reason_codes.append(self.reasons.code(reason))

    def merge(self, other: DecisionColumns) -> None:
        remap = np.asarray([self.reasons.code(word) for word in other.reasons.words], dtype=np.int32)
        self.ids.extend(other.ids)
        self.kept += other.kept
        if len(other):
            self.reason_codes.extend(array.array("i", remap[np.frombuffer(other.reason_codes, np.int32)].tobytes()))


class KeptColumns(_Columns):
    """(episode id, return, timesteps, tokens) rows of one task."""

    def __init__(self) -> None:
        self.ids = StringColumn()
        self.values = array.array("d")
        self.timesteps = array.array("q")
        self.tokens = array.array("q")

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, episode_id: str, value: float, timesteps: int, tokens: int) -> None:  # type: ignore[override]
        self.ids.append(episode_id)
        self.values.append(value)
        self.timesteps.append(timesteps)
        self.tokens.append(tokens)

    def merge(self, other: KeptColumns) -> None:
        self.ids.extend(other.ids)
        self.values.extend(other.values)
        self.timesteps.extend(other.timesteps)
        self.tokens.extend(other.tokens)
