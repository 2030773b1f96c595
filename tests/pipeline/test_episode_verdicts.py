"""pipeline/episode_verdicts.py: pass 1's verdict stages. `EpisodeVerdicts` gives the return
of each usable episode and pass 2's reject of each that does not tokenize (the RLDS and
return checks pass 2 repeats give nothing here); `UniqueEpisodeIds` rejects every copy of a
repeated id (strict: an error); `JoinVerdicts` makes one `TaskVerdicts` per task."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counters import counter_name
from pipeline.episode_verdicts import (
    REJECTS,
    RETURNS,
    THRESHOLDS,
    EpisodeVerdicts,
    JoinVerdicts,
    UniqueEpisodeIds,
)
from pipeline.rejects import REJECTS_TAG
from schemas.fields import continuous, discrete
from tests.pipeline.pipeline_fixtures import RUNNER, committed_counters, raw_episode
from transforms.episode import EpisodeKey, EpisodeReturn, RawEpisode
from transforms.errors import NON_FINITE
from transforms.expert_filter import expert_return
from transforms.task_tokenizer import TokenizerConfig
from transforms.verdict import DUPLICATE_EPISODE_ID

TASK = ("metaworld", "gato_metaworld/reach-v3")
CONFIG = TokenizerConfig(
    task_fields={TASK[1]: {"observation/state": continuous("linear"), "action": discrete()}}, max_timestep_tokens=1024
)
NAMESPACE = "gato.test_pass1"


def _return(raw: RawEpisode) -> float:
    return float(raw.episode_metadata["episode_return"])


def test_usable_episodes_give_returns_and_tokenization_failures_give_pass_2_rejects() -> None:
    usable = raw_episode(episode_id="1")
    nan_state = raw_episode(episode_id="2")
    nan_state.steps["observation"]["state"][1, 1] = np.nan
    no_last = raw_episode(episode_id="3", last=[])
    inf_return = raw_episode(episode_id="4")
    inf_return.episode_metadata["episode_return"] = np.float32(np.inf)
    p = TestPipeline(runner=RUNNER)
    out = p | beam.Create([usable, nan_state, no_last, inf_return]) | EpisodeVerdicts(
        CONFIG, return_fn=_return, return_field="episode_return", namespace=NAMESPACE
    )
    assert_that(out[RETURNS] | "Returns" >> beam.Map(lambda r: (r.key.episode_id, r.value, r.num_steps)),
                equal_to([("1", 2.25, 3)]), label="returns")
    assert_that(
        out[REJECTS_TAG] | "Rejects" >> beam.MapTuple(lambda task, pr: (task, pr[0], pr[1].episode_id, pr[1].reason)),
        equal_to([(TASK, ("shard-0", 3), "2", NON_FINITE)]), label="rejects",
    )
    result = p.run()
    result.wait_until_finish()
    assert committed_counters(result, NAMESPACE) == {counter_name(TASK, "returns"): 1, counter_name(TASK, "rejected"): 3}


@pytest.mark.parametrize("bad", ["nan_state", "inf_return"])
def test_strict_stops_at_the_first_unusable_episode(bad: str) -> None:
    raw = raw_episode(episode_id="2")
    if bad == "nan_state":
        raw.steps["observation"]["state"][1, 1] = np.nan
    else:
        raw.episode_metadata["episode_return"] = np.float32(np.inf)
    p = TestPipeline(runner=RUNNER)
    _ = p | beam.Create([raw]) | EpisodeVerdicts(
        CONFIG, return_fn=_return, return_field="episode_return", namespace=NAMESPACE, strict=True
    )
    with pytest.raises(Exception, match=r"file 'shard-0' \(record 3\), task 'gato_metaworld/reach-v3'"):
        p.run().wait_until_finish()


def _value(episode_id: str, file: str, record: int, value: float) -> EpisodeReturn:
    return EpisodeReturn(EpisodeKey(*TASK, episode_id, (int(episode_id),), file, record, 0), value, 3)


def test_every_copy_of_a_repeated_id_is_rejected_before_any_threshold() -> None:
    values = [_value("1", "a", 0, 1.0), _value("2", "a", 1, 99.0), _value("2", "b", 0, 5.0), _value("3", "b", 1, 2.0)]
    p = TestPipeline(runner=RUNNER)
    out = p | beam.Create(values) | UniqueEpisodeIds(namespace=NAMESPACE)
    assert_that(out[RETURNS] | "Ids" >> beam.Map(lambda r: r.key.episode_id), equal_to(["1", "3"]), label="unique")
    assert_that(
        out[REJECTS_TAG] | "Copies" >> beam.MapTuple(lambda task, pr: (task, pr[0], pr[1].reason, pr[1].detail)),
        equal_to([
            (TASK, ("a", 1), DUPLICATE_EPISODE_ID,
             f"file 'a' (record 1), task '{TASK[1]}': episode id '2' is also read from file 'b' (record 0); every copy is rejected"),
            (TASK, ("b", 0), DUPLICATE_EPISODE_ID,
             f"file 'b' (record 0), task '{TASK[1]}': episode id '2' is also read from file 'a' (record 1); every copy is rejected"),
        ]),
        label="rejects",
    )
    result = p.run()
    result.wait_until_finish()
    assert committed_counters(result, NAMESPACE) == {counter_name(TASK, "duplicate_ids"): 2}


def test_strict_makes_a_repeated_id_an_error() -> None:
    p = TestPipeline(runner=RUNNER)
    _ = p | beam.Create([_value("2", "a", 1, 1.0), _value("2", "b", 0, 1.0)]) | UniqueEpisodeIds(
        namespace=NAMESPACE, strict=True
    )
    with pytest.raises(Exception, match=r"episode id '2' appears 2 times in task .*file 'a' \(record 1\), file 'b' \(record 0\)"):
        p.run().wait_until_finish()


def test_one_task_verdicts_per_task_with_a_threshold_or_rejects() -> None:
    threshold = expert_return([1.0, 2.0])
    p = TestPipeline(runner=RUNNER)
    thresholds = p | "Thresholds" >> beam.Create([(TASK, threshold)])
    rejects = p | "Rejects" >> beam.Create([(("d", "other"), (("f", 0), "reject of f:0"))])
    out = {THRESHOLDS: thresholds, REJECTS: rejects} | JoinVerdicts()
    assert_that(
        out | beam.MapTuple(lambda task, v: (task, v.expert, dict(v.rejects))),
        equal_to([(TASK, threshold, {}), (("d", "other"), None, {("f", 0): "reject of f:0"})]),
    )
    p.run().wait_until_finish()
