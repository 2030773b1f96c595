"""The reader's resumable state: a small JSON-able dict.

`{"version": 1, "fingerprint": ..., "position": n, "mixture": {...} | absent}`:
`position` is the number of global samples consumed (by all ranks together), which is
all that is needed to continue the global stream, at any world size or batch size.
`mixture` is the draw state at `position`, an optional shortcut that spares re-simulating
the draws from 0. The fingerprint hashes what defines the global stream (outputs, sources,
weights, seed, shuffle buffer, exhaustion policy); restoring with other settings is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

STATE_VERSION = 1
# Largest position a state may hold: positions and draw counts are int64 in the reader.
MAX_POSITION = 2**63 - 1


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def fingerprint(definition: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of what defines the stream."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class ReaderState:
    """Invariant: position >= 0; `mixture`, when present, is the draw state at `position`."""

    fingerprint: str
    position: int
    mixture: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": STATE_VERSION, "fingerprint": self.fingerprint, "position": self.position}
        if self.mixture is not None:
            data["mixture"] = dict(self.mixture)
        return data

    @staticmethod
    def from_dict(data: Mapping[str, Any], *, expected_fingerprint: str) -> ReaderState:
        """Parse a saved state, refusing another version or another stream's state.

        Every field of the wrong type is a ValueError naming it (the mixture's own fields
        are checked by `reader.mixture.Mixture.restore`).
        """
        version = data.get("version") if isinstance(data, Mapping) else None
        if isinstance(version, bool) or version != STATE_VERSION:
            shown = dict(data) if isinstance(data, Mapping) else data
            raise ValueError(f"not a reader state of version {STATE_VERSION}: {shown!r}")
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
        return ReaderState(expected_fingerprint, position, mixture)
