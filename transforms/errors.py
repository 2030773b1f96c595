"""The one error type tokenization raises for bad input (spec section 7).

Low-level functions (continuous, discrete, images, text) know the offending value and
its timestep but not the episode or field; `tokenize_episode` re-raises their errors
with that context filled in (`with_context`), so the final message names all four.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# Short reason codes: stable strings that end up in the rejects output.
NON_FINITE = "non_finite"
DISCRETE_OUT_OF_RANGE = "discrete_out_of_range"
BAD_DTYPE = "bad_dtype"
BAD_SHAPE = "bad_shape"
IMAGE_NOT_UINT8 = "image_not_uint8"
TOO_MANY_OBSERVATION_TOKENS = "too_many_observation_tokens"
TEXT_ID_OUT_OF_RANGE = "text_id_out_of_range"
INVALID_UTF8 = "invalid_utf8"
MISSING_FIELD = "missing_field"
UNKNOWN_FIELD = "unknown_field"
CORRUPT_IMAGE = "corrupt_image"  # PNG bytes Pillow cannot decode

REASONS = frozenset(
    {
        NON_FINITE,
        DISCRETE_OUT_OF_RANGE,
        BAD_DTYPE,
        BAD_SHAPE,
        IMAGE_NOT_UINT8,
        TOO_MANY_OBSERVATION_TOKENS,
        TEXT_ID_OUT_OF_RANGE,
        INVALID_UTF8,
        MISSING_FIELD,
        UNKNOWN_FIELD,
        CORRUPT_IMAGE,
    }
)


_MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # in Python reprs: `<_io.BytesIO object at 0x7f...>`


def without_addresses(text: str) -> str:
    """`text` without the memory addresses of Python reprs, so a message (a reject's
    detail) is the same on every run."""
    return _MEMORY_ADDRESS.sub("", text)


class TokenizationError(ValueError):
    """Bad input found while tokenizing: names episode, field, timestep and value.

    `reason` is one of `REASONS`; `field` is a path like `observation/image` (None when
    not yet known); `timestep` is the emitted-timestep index (None when the problem is
    not tied to one timestep, e.g. a missing field).
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        episode: str | None = None,
        field: str | None = None,
        timestep: int | None = None,
        value: Any = None,
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown tokenization error reason {reason!r}")
        self.reason = reason
        self.detail = detail
        self.episode = episode
        self.field = field
        self.timestep = timestep
        self.value = value
        super().__init__(self._message())

    def _message(self) -> str:
        where = [
            f"episode {self.episode!r}" if self.episode is not None else None,
            f"field {self.field!r}" if self.field is not None else None,
            f"timestep {self.timestep}" if self.timestep is not None else None,
        ]
        prefix = ", ".join(w for w in where if w is not None)
        value = f" (value {self.value!r})" if self.value is not None else ""
        return f"{prefix + ': ' if prefix else ''}{self.detail}{value} [{self.reason}]"

    def with_context(
        self, *, episode: str | None = None, field: str | None = None
    ) -> TokenizationError:
        """A copy with episode/field filled in where they were still unknown."""
        return TokenizationError(
            self.reason,
            self.detail,
            episode=self.episode if self.episode is not None else episode,
            field=self.field if self.field is not None else field,
            timestep=self.timestep,
            value=self.value,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor: default exception pickling would lose the context
        # (Beam pickles errors between workers).
        return (
            _rebuild,
            (self.reason, self.detail, self.episode, self.field, self.timestep, self.value),
        )


def _rebuild(
    reason: str,
    detail: str,
    episode: str | None,
    field: str | None,
    timestep: int | None,
    value: Any,
) -> TokenizationError:
    return TokenizationError(
        reason, detail, episode=episode, field=field, timestep=timestep, value=value
    )


def first_bad_index(bad: np.ndarray) -> tuple[int, ...]:
    """Multi-index of the first True in a boolean array (row-major)."""
    flat = int(np.flatnonzero(bad)[0])
    return tuple(int(i) for i in np.unravel_index(flat, np.shape(bad)))


def located(
    reason: str,
    detail: str,
    values: np.ndarray,
    bad: np.ndarray,
    *,
    leading_time_axis: bool,
) -> TokenizationError:
    """An error for the first flagged element of `values`: its index, timestep and value.

    With `leading_time_axis` the first index is the timestep; otherwise no timestep is
    claimed (the array is a single observation, say).
    """
    index = first_bad_index(bad)
    value = np.asarray(values)[index]
    value = value.item() if hasattr(value, "item") else value
    timestep = index[0] if leading_time_axis and index else None
    return TokenizationError(
        reason, f"{detail} at index {index}", timestep=timestep, value=value
    )
