"""RLDS rules on a read episode (spec section 7), their reason codes, and an episode's return.

Rules (`check_rlds`, checked in this order; the first broken one is the reject reason):
- the step flags `is_first` and `is_last` exist;
- every step leaf has the same length (the number of RLDS steps);
- `is_first` is True exactly at step 0;
- `is_last` is True exactly at the final step (none at all: `rlds_is_last`);
- at least one emitted timestep (the final is_last step is never emitted).

A broken rule raises `RldsViolation`: a ValueError with the `reason` code, the `field`,
and a message naming file, record, task and episode; it pickles with all three, and
`to_reject` makes its `Reject`. `REASONS` are the codes of the read and validate stages
(`corrupt_record`, `dtype_mismatch`, `shape_mismatch`, `missing_record`, `unexpected_record`
included); tokenization's are in `transforms/errors.py`.

`episode_return` (spec section 4): the episode's `episode_return` field or, as the
dataset spec says, the reward sum over all RLDS steps in float64 (the final step's
reward is part of the episode in RLDS, and is 0 in RL Unplugged).

The Beam stage is `pipeline/validate_episodes.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.datasets import DatasetSpec
from schemas.fields import EPISODE_RETURN, IS_FIRST, IS_LAST, REWARD
from schemas.rlds_spec import RETURN_EPISODE_RETURN
from transforms.episode import RawEpisode, Reject
from transforms.steps import step_leaves

# --- Reason codes of the read and validate stages (the rejects table's `reason`). ---
CORRUPT_RECORD = "corrupt_record"  # a TFRecord that cannot be read or parsed
DTYPE_MISMATCH = "dtype_mismatch"  # a feature's values are not of the dtype features.json declares
SHAPE_MISMATCH = "shape_mismatch"  # a feature's values do not fit the shape features.json declares
MISSING_RECORD = "missing_record"  # a record dataset_info.json's shardLengths promises, not in the shard
UNEXPECTED_RECORD = "unexpected_record"  # a record past the count shardLengths gives for its shard
RLDS_IS_FIRST = "rlds_is_first"
RLDS_IS_LAST = "rlds_is_last"
RLDS_STEP_LENGTHS = "rlds_step_lengths"
RLDS_NO_TIMESTEPS = "rlds_no_timesteps"
REASONS = frozenset({
    CORRUPT_RECORD, DTYPE_MISMATCH, SHAPE_MISMATCH, MISSING_RECORD, UNEXPECTED_RECORD,
    RLDS_IS_FIRST, RLDS_IS_LAST, RLDS_STEP_LENGTHS, RLDS_NO_TIMESTEPS,
})


class RldsViolation(ValueError):
    """An episode breaks an RLDS rule: `reason` (a code above), `field`, full message."""

    def __init__(self, reason: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (RldsViolation, (self.reason, self.field, str(self)))

    def to_reject(self, raw: RawEpisode) -> Reject:
        return Reject.of_episode(raw.key, reason=self.reason, field=self.field, detail=str(self))


def _where(raw: RawEpisode) -> str:
    key = raw.key
    return (
        f"{key.source_file}, record {key.index_in_file}, task {key.task!r}, "
        f"episode {key.episode_id!r}"
    )


def check_rlds(raw: RawEpisode) -> None:
    """Raise RldsViolation for the first broken RLDS rule (module doc); return if valid."""
    leaves = step_leaves(raw.steps)
    for flag, reason in ((IS_FIRST, RLDS_IS_FIRST), (IS_LAST, RLDS_IS_LAST)):
        if flag not in raw.steps:
            raise RldsViolation(reason, flag, f"{_where(raw)}: step field {flag!r} is missing")
    lengths = {path: len(value) for path, value in leaves.items()}
    num_steps = lengths[IS_FIRST]
    different = {p: n for p, n in lengths.items() if n != num_steps}
    if different:
        path, n = sorted(different.items())[0]
        raise RldsViolation(
            RLDS_STEP_LENGTHS,
            path,
            f"{_where(raw)}: step field {path!r} has {n} steps but {IS_FIRST!r} has {num_steps}",
        )
    is_first = np.asarray(raw.steps[IS_FIRST], dtype=bool)
    is_last = np.asarray(raw.steps[IS_LAST], dtype=bool)
    if num_steps == 0:
        raise RldsViolation(RLDS_NO_TIMESTEPS, None, f"{_where(raw)}: the episode has no steps")
    first_at = np.flatnonzero(is_first).tolist()
    if first_at != [0]:
        raise RldsViolation(
            RLDS_IS_FIRST,
            IS_FIRST,
            f"{_where(raw)}: {IS_FIRST!r} must be True exactly at step 0, "
            f"found True at steps {first_at[:10]}",
        )
    last_at = np.flatnonzero(is_last).tolist()
    if last_at != [num_steps - 1]:
        found = f"True at steps {last_at[:10]}" if last_at else "no step with it set"
        raise RldsViolation(
            RLDS_IS_LAST,
            IS_LAST,
            f"{_where(raw)}: {IS_LAST!r} must be True exactly at the final step "
            f"{num_steps - 1}, found {found}",
        )
    if num_steps < 2:
        raise RldsViolation(
            RLDS_NO_TIMESTEPS,
            None,
            f"{_where(raw)}: only the final {IS_LAST!r} step, so no timestep to emit",
        )


def episode_return(raw: RawEpisode, spec: DatasetSpec) -> float:
    """The episode's return (spec section 4): its `episode_return` field or the reward sum.

    The sum runs over all RLDS steps in float64 (the final step's reward is part of the
    episode in RLDS, and is 0 in RL Unplugged).
    """
    if spec.return_source == RETURN_EPISODE_RETURN:
        if EPISODE_RETURN not in raw.episode_metadata:
            raise ValueError(
                f"{_where(raw)}: dataset {spec.name!r} takes returns from "
                f"{EPISODE_RETURN!r}, which the episode does not have"
            )
        return float(np.asarray(raw.episode_metadata[EPISODE_RETURN]))
    if REWARD not in raw.steps:
        raise ValueError(f"{_where(raw)}: step field {REWARD!r} is missing, cannot sum rewards")
    return float(np.sum(np.asarray(raw.steps[REWARD], dtype=np.float64)))
