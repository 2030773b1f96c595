"""transforms/rlds_rules.py: the RLDS rules an episode must follow (their reasons, fields and
messages), the reject they make, and where returns come from; with the emitted steps
(transforms/steps.py) those rules imply."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.datasets import CONTROL_SUITE, METAWORLD
from tests.episode_fixtures import raw_episode
from transforms.episode import RawEpisode, Reject
from transforms.rlds_rules import (
    RLDS_IS_FIRST,
    RLDS_IS_LAST,
    RLDS_NO_TIMESTEPS,
    RLDS_STEP_LENGTHS,
    RldsViolation,
    check_rlds,
    episode_return,
)
from transforms.steps import emitted_steps


def violation(raw: RawEpisode) -> RldsViolation:
    with pytest.raises(RldsViolation) as e:
        check_rlds(raw)
    return e.value


def test_valid_episode_passes() -> None:
    check_rlds(raw_episode())
    check_rlds(raw_episode(2))  # one emitted timestep is enough


def test_no_is_last_is_rlds_is_last() -> None:
    v = violation(raw_episode(last=[]))
    assert v.reason == RLDS_IS_LAST and v.field == "is_last"
    assert str(v) == (
        "shard-0, record 3, task 'gato_metaworld/reach-v3', episode '7': 'is_last' must be "
        "True exactly at the final step 3, found no step with it set"
    )


def test_is_last_in_the_middle() -> None:
    v = violation(raw_episode(last=[1, 3]))
    assert v.reason == RLDS_IS_LAST
    assert "found True at steps [1, 3]" in str(v)


@pytest.mark.parametrize("first", [[1], [0, 2], []])
def test_is_first_exactly_at_step_0(first: list[int]) -> None:
    v = violation(raw_episode(first=first))
    assert v.reason == RLDS_IS_FIRST and v.field == "is_first"
    assert f"found True at steps {first}" in str(v)


def test_differing_step_lengths_name_the_field() -> None:
    raw = raw_episode()
    raw.steps["observation"]["state"] = raw.steps["observation"]["state"][:3]
    v = violation(raw)
    assert v.reason == RLDS_STEP_LENGTHS and v.field == "observation/state"
    assert "'observation/state' has 3 steps but 'is_first' has 4" in str(v)


def test_missing_flag() -> None:
    raw = raw_episode()
    del raw.steps["is_last"]
    v = violation(raw)
    assert v.reason == RLDS_IS_LAST and "'is_last' is missing" in str(v)


def test_at_least_one_emitted_timestep() -> None:
    raw = raw_episode(1)  # is_first and is_last both at step 0
    v = violation(raw)
    assert v.reason == RLDS_NO_TIMESTEPS and "no timestep to emit" in str(v)
    empty = raw_episode(1)
    empty.steps = {k: (v[:0] if not isinstance(v, dict) else {"state": v["state"][:0]}) for k, v in empty.steps.items()}
    assert violation(empty).reason == RLDS_NO_TIMESTEPS


def test_reject_carries_the_episode() -> None:
    raw = raw_episode(last=[])
    assert violation(raw).to_reject(raw) == Reject(
        dataset="metaworld",
        task="gato_metaworld/reach-v3",
        episode_id="7",
        source_file="shard-0",
        reason=RLDS_IS_LAST,
        field="is_last",
        detail=str(violation(raw)),
    )


def test_emitted_steps_drop_the_final_step() -> None:
    raw = raw_episode(4)
    emitted = emitted_steps(raw)
    np.testing.assert_array_equal(emitted["action"], [0, 1, 2])
    np.testing.assert_array_equal(emitted["observation"]["state"], [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(emitted["is_last"], [False, False, False])
    assert raw.steps["action"].shape == (4,)  # the input is untouched


def test_episode_return_sources() -> None:
    raw = raw_episode(4)
    assert episode_return(raw, METAWORLD) == 2.25
    assert episode_return(raw, CONTROL_SUITE) == 2.0  # 4 rewards of 0.5
    raw.episode_metadata = {}
    with pytest.raises(ValueError, match="takes returns from 'episode_return'"):
        episode_return(raw, METAWORLD)


def test_the_read_stage_reason_codes_are_stable_strings() -> None:
    from transforms import rlds_rules

    read = {rlds_rules.CORRUPT_RECORD, rlds_rules.DTYPE_MISMATCH, rlds_rules.SHAPE_MISMATCH,
            rlds_rules.MISSING_RECORD, rlds_rules.UNEXPECTED_RECORD}
    assert read == {"corrupt_record", "dtype_mismatch", "shape_mismatch", "missing_record", "unexpected_record"}
    assert read <= rlds_rules.REASONS
