"""transforms/verdict.py: one verdict per episode, the same in both passes: the RLDS rules,
a finite return, tokenization and the timestep fit, in that order; every copy of a
duplicate id rejected (each naming both files and records), or under strict an error; and
`TaskVerdicts`, pass 1's per-task result."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from schemas.fields import continuous, discrete
from tests.episode_fixtures import raw_episode
from transforms.episode import EpisodeKey, RawEpisode
from transforms.errors import NON_FINITE, TokenizationError
from transforms.expert_filter import expert_return
from transforms.rlds_rules import RLDS_IS_LAST, RldsViolation
from transforms.sequence import TIMESTEP_TOO_LONG, SequencingError
from transforms.task_tokenizer import TaskTokenizer, TokenizerConfig
from transforms.verdict import (
    DUPLICATE_EPISODE_ID,
    NON_FINITE_RETURN,
    DuplicateEpisodeId,
    NonFiniteReturn,
    TaskVerdicts,
    check_return,
    duplicate_rejects,
    episode_verdict,
    verdict_reject,
)

TASK = "gato_metaworld/reach-v3"
TOKENIZER = TaskTokenizer(
    TokenizerConfig(task_fields={TASK: {"observation/state": continuous("linear"), "action": discrete()}})
)
LOCATION = f"file 'shard-0' (record 3), task '{TASK}'"  # raw_episode's key


def _verdict(raw: RawEpisode, *, max_tokens: int | None = 1024) -> float:
    return episode_verdict(
        raw, return_fn=lambda r: float(np.sum(r.steps["reward"], dtype=np.float64)), return_field="reward",
        timestep_starts=TOKENIZER.check, max_timestep_tokens=max_tokens,
    )


def test_a_usable_episode_gets_its_return() -> None:
    assert _verdict(raw_episode(4)) == 2.0  # 4 rewards of 0.5


def test_the_checks_run_in_order_and_the_first_failure_is_the_reason() -> None:
    broken = raw_episode(4, last=[])  # no is_last, and a NaN state and an inf reward besides
    broken.steps["observation"]["state"][0, 0] = np.nan
    broken.steps["reward"][1] = np.inf
    with pytest.raises(RldsViolation) as error:
        _verdict(broken)
    assert error.value.reason == RLDS_IS_LAST
    infinite = raw_episode(4)
    infinite.steps["observation"]["state"][0, 0] = np.nan
    infinite.steps["reward"][1] = np.inf
    with pytest.raises(NonFiniteReturn) as error:
        _verdict(infinite)
    assert (error.value.reason, error.value.field) == (NON_FINITE_RETURN, "reward")
    assert str(error.value) == (
        f"{LOCATION}, episode '7': the return (from 'reward') is inf; the expert filter needs a finite return"
    )
    nan_state = raw_episode(4)
    nan_state.steps["observation"]["state"][0, 0] = np.nan
    with pytest.raises(TokenizationError) as error:
        _verdict(nan_state)
    assert (error.value.reason, error.value.field) == (NON_FINITE, "observation/state")
    with pytest.raises(SequencingError) as error:
        _verdict(raw_episode(4), max_tokens=3)  # a timestep is 4 tokens
    assert error.value.reason == TIMESTEP_TOO_LONG


def test_rejects_name_file_record_episode_reason_and_field() -> None:
    raw = raw_episode(4)
    raw.steps["observation"]["state"][0, 0] = np.nan
    with pytest.raises(TokenizationError) as error:
        _verdict(raw)
    reject = verdict_reject(raw.key, error.value)
    assert (reject.episode_id, reject.source_file, reject.reason, reject.field) == ("7", "shard-0", NON_FINITE, "observation/state")
    assert reject.detail == f"{LOCATION}: {error.value}"
    with pytest.raises(NonFiniteReturn) as infinite:
        check_return(raw.key, math.nan, field="episode_return")
    reject = verdict_reject(raw.key, infinite.value)
    assert (reject.reason, reject.field, reject.detail) == (NON_FINITE_RETURN, "episode_return", str(infinite.value))


def test_a_non_finite_return_pickles_with_its_context() -> None:
    with pytest.raises(NonFiniteReturn) as error:
        check_return(raw_episode(4).key, -math.inf, field="reward")
    again = pickle.loads(pickle.dumps(error.value))
    assert (type(again), again.reason, again.field, str(again)) == (NonFiniteReturn, NON_FINITE_RETURN, "reward", str(error.value))
    assert check_return(raw_episode(4).key, np.float32(1.5)) == 1.5


def _key(file: str, record: int, episode_id: str = "4") -> EpisodeKey:
    return EpisodeKey("d", "t/c", episode_id, (int(episode_id),), file, record, 0)


def test_every_copy_of_a_duplicate_id_is_rejected_naming_every_file_and_record() -> None:
    copies = [_key("b.tfrecord", 0), _key("a.tfrecord", 3), _key("a.tfrecord", 1)]
    rejects = duplicate_rejects(copies)
    assert [key for key, _ in rejects] == [_key("a.tfrecord", 1), _key("a.tfrecord", 3), _key("b.tfrecord", 0)]
    also = "episode id '4' is also read from"
    assert [r.detail for _, r in rejects] == [
        f"file 'a.tfrecord' (record 1), task 't/c': {also} file 'a.tfrecord' (record 3), file 'b.tfrecord' (record 0); every copy is rejected",
        f"file 'a.tfrecord' (record 3), task 't/c': {also} file 'a.tfrecord' (record 1), file 'b.tfrecord' (record 0); every copy is rejected",
        f"file 'b.tfrecord' (record 0), task 't/c': {also} file 'a.tfrecord' (record 1), file 'a.tfrecord' (record 3); every copy is rejected",
    ]
    assert {(r.episode_id, r.reason, r.field) for _, r in rejects} == {("4", DUPLICATE_EPISODE_ID, "episode_id")}
    assert [r.source_file for _, r in rejects] == ["a.tfrecord", "a.tfrecord", "b.tfrecord"]


def test_strict_makes_a_duplicate_id_an_error_naming_id_task_and_files() -> None:
    with pytest.raises(DuplicateEpisodeId) as error:
        duplicate_rejects([_key("b.tfrecord", 0), _key("a.tfrecord", 3)], strict=True)
    assert str(error.value) == (
        "episode id '4' appears 2 times in task 't/c' of dataset 'd': "
        "file 'a.tfrecord' (record 3), file 'b.tfrecord' (record 0)"
    )
    assert isinstance(error.value, ValueError)


def test_task_verdicts_give_the_keep_threshold_and_pass_1_rejects_by_file_and_record() -> None:
    expert = expert_return([1.0, 10.0])
    [(_, reject)] = duplicate_rejects([_key("a", 1), _key("b", 2)])[:1]
    verdicts = TaskVerdicts(expert=expert, rejects={("a", 1): reject})
    assert verdicts.threshold == expert.threshold == 8.0
    assert verdicts.reject_of(_key("a", 1)) is reject
    assert verdicts.reject_of(_key("a", 2)) is None
    assert TaskVerdicts(expert=None).threshold == -math.inf
