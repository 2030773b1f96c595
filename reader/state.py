"""The reader's resumable state: a small JSON-able dict.

`{"version": 2, "fingerprint": ..., "position": n, "mixture": {...} | absent, "tail": [...] | absent}`:
every global sample before `position` (the frontier) was consumed. Ranks read their own
samples (`reader.sharding`), so at a save some ranks stand past the frontier: `tail` says
which samples beyond it were consumed, as layers `{"world_size": W, "ends": [e_0, ...]}`,
each marking sample g consumed when g < e_r for the rank r that owns g at world size W
(a layer per world size the stream ran at since those samples, newest first). Frontier and
tail are all that is needed to read every remaining sample exactly once, at any world size
or batch size. `mixture` is the draw state at `position`, an optional shortcut that spares
re-simulating the draws from 0. The fingerprint hashes what defines the global stream
(outputs, sources, weights, seed, shuffle buffer, exhaustion policy); restoring with other
settings is refused. A version 1 state (no tail) is read as a version 2 state without one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

STATE_VERSION = 2
_READS = (1, 2)  # versions restored; 1 is 2 without a tail
MAX_TAIL_LAYERS = 64  # a layer per world-size change still past the frontier; more is a corrupt state
# Largest position a state may hold: positions and draw counts are int64 in the reader.
MAX_POSITION = 2**63 - 1


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def fingerprint(definition: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of what defines the stream."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Tail:
    """Samples past the frontier consumed at one world size: g with g < ends[owner of g].
    Invariant: len(ends) == world_size >= 1."""

    world_size: int
    ends: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "ends": list(self.ends)}

    @staticmethod
    def from_dict(data: Any) -> Tail:
        """Parse one layer; ValueError naming the field that is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"reader state tail layer {data!r} is not an object; the state is corrupt")
        world, ends = data.get("world_size"), data.get("ends")
        if not _is_count(world) or world < 1:
            raise ValueError(f"reader state tail world_size {world!r} is not an integer >= 1")
        if not isinstance(ends, list) or len(ends) != world or not all(_is_count(e) and e <= MAX_POSITION for e in ends):
            raise ValueError(f"reader state tail ends {ends!r} is not a list of {world} non-negative integers")
        return Tail(world, tuple(ends))


@dataclasses.dataclass(frozen=True)
class ReaderState:
    """Invariant: position >= 0; `mixture`, when present, is the draw state at `position`.
    A tail layer's ends may lie before `position` for some ranks (those say nothing)."""

    fingerprint: str
    position: int
    mixture: Mapping[str, Any] | None = None
    tail: tuple[Tail, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": STATE_VERSION, "fingerprint": self.fingerprint, "position": self.position}
        if self.mixture is not None:
            data["mixture"] = dict(self.mixture)
        if self.tail:
            data["tail"] = [t.to_dict() for t in self.tail]
        return data

    @staticmethod
    def from_dict(data: Mapping[str, Any], *, expected_fingerprint: str) -> ReaderState:
        """Parse a saved state, refusing another version or another stream's state.

        Every field of the wrong type is a ValueError naming it (the mixture's own fields
        are checked by `reader.mixture.Mixture.restore`).
        """
        version = data.get("version") if isinstance(data, Mapping) else None
        if isinstance(version, bool) or version not in _READS:
            shown = dict(data) if isinstance(data, Mapping) else data
            raise ValueError(f"not a reader state of version {' or '.join(map(str, _READS))}: {shown!r}")
        found = data.get("fingerprint")
        if not isinstance(found, str):
            raise ValueError(f"reader state fingerprint {found!r} is not a string; the state is corrupt")
        if found != expected_fingerprint:
            raise ValueError(
                "the saved reader state belongs to another stream (different outputs, weights, seed, "
                "shuffle buffer or exhaustion policy); restore it with the settings it was saved with"
            )
        position = data.get("position")
        if not _is_count(position):
            raise ValueError(f"reader state position {position!r} is not a non-negative integer")
        if position > MAX_POSITION:
            raise ValueError(
                f"reader state position {position} is above 2**63 - 1, the largest the reader counts to; "
                "the state is corrupt"
            )
        mixture = data.get("mixture")
        if mixture is not None and not isinstance(mixture, Mapping):
            raise ValueError(f"reader state mixture {mixture!r} is not an object; the state is corrupt")
        if mixture is not None and not _is_count(mixture.get("position")):
            raise ValueError(
                f"reader state mixture.position {mixture.get('position')!r} is not a non-negative integer; "
                "the state is corrupt"
            )
        if mixture is not None and mixture.get("position") != position:
            mixture = None  # a stale shortcut: recompute from the position instead
        layers = data.get("tail", []) if version == STATE_VERSION else []
        if not isinstance(layers, list) or len(layers) > MAX_TAIL_LAYERS:
            raise ValueError(f"reader state tail {layers!r} is not a list of at most {MAX_TAIL_LAYERS} layers")
        tail = tuple(Tail.from_dict(layer) for layer in layers)
        return ReaderState(expected_fingerprint, position, mixture, tail)
