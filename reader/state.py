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
        """Parse a saved state, refusing another version or another stream's state."""
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            shown = dict(data) if isinstance(data, Mapping) else data
            raise ValueError(f"not a reader state of version {STATE_VERSION}: {shown!r}")
        if data.get("fingerprint") != expected_fingerprint:
            raise ValueError(
                "the saved reader state belongs to another stream (different outputs, weights, seed, "
                "shuffle buffer or exhaustion policy); restore it with the settings it was saved with"
            )
        position = data.get("position")
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise ValueError(f"reader state position {position!r} is not a non-negative integer")
        mixture = data.get("mixture")
        if mixture is not None and mixture.get("position") != position:
            mixture = None  # a stale shortcut: recompute from the position instead
        return ReaderState(expected_fingerprint, position, mixture)
