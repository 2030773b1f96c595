"""RLDS rules on a read episode (spec section 7), and the helpers every later stage uses.

Rules (checked in this order; the first broken one is the reject reason):
- the step flags `is_first` and `is_last` exist;
- every step leaf has the same length (the number of RLDS steps);
- `is_first` is True exactly at step 0;
- `is_last` is True exactly at the final step (none at all: `rlds_is_last`);
- at least one emitted timestep (the final is_last step is never emitted).

`ValidateEpisodes` applies them in Beam: valid episodes on the main output, a `Reject`
per broken episode on the `rejects` output, or a ValueError with `strict=True`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.fields import IS_FIRST, PATH_SEPARATOR
from transforms.episode import RawEpisode


def step_leaves(steps: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten the nested steps dict to {path: array}, paths joined with `/`."""
    out: dict[str, Any] = {}
    for key, value in steps.items():
        path = f"{prefix}{PATH_SEPARATOR}{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(step_leaves(value, path))
        else:
            out[path] = value
    return out


def emitted_steps(raw: RawEpisode) -> dict[str, Any]:
    """The steps without the final is_last step (its action is invalid): tokenization's input.

    Same nesting as `raw.steps`; every leaf is a view of the first T = steps - 1 entries.
    Call on a validated episode.
    """

    def cut(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: cut(v) for k, v in value.items()}
        return value[:-1]

    return cut(raw.steps)


def num_emitted_steps(raw: RawEpisode) -> int:
    return len(raw.steps[IS_FIRST]) - 1


def slice_steps(steps: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Timesteps [start, stop) of a nested dict of arrays with a leading time axis (views)."""
    return {
        k: slice_steps(v, start, stop) if isinstance(v, Mapping) else v[start:stop]
        for k, v in steps.items()
    }


def count_steps(steps: dict[str, Any]) -> int:
    for value in steps.values():
        return count_steps(value) if isinstance(value, dict) else len(value)
    return 0
