"""Helpers on RLDS step dicts (nested dicts of arrays with a leading time axis), after reading.

A read episode has one entry per RLDS step, the final `is_last` step included. That
step's action is not valid, so it is never emitted: `emitted_steps` gives views of the
first T = steps - 1 entries (tokenization's input) and `num_emitted_steps` gives T; call
both on a validated episode (`transforms/rlds_rules.py`). `step_leaves` flattens the dict
to {path: array}, paths joined with `/`; `slice_steps` takes timesteps [start, stop) as
views; `count_steps` is the length of the first leaf.
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
