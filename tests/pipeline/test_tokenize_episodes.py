"""pipeline/tokenize_episodes.py: TokenizeEpisodes gives (key, TokenizedEpisode) of the emitted
steps and a KeptEpisode per tokenized episode, a Reject naming file and record for a bad
value or a timestep longer than the sequence (strict: a ValueError), and counts per task."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counters import counter_name
from pipeline.rejects import REJECTS_TAG
from pipeline.tokenize_episodes import COUNTER_NAMESPACE, KEPT_TAG, TokenizeEpisodes
from schemas.fields import continuous, discrete
from tests.pipeline.pipeline_fixtures import RUNNER, committed_counters, raw_episode
from transforms.episode import KeptEpisode, RawEpisode, Reject
from transforms.errors import NON_FINITE, TokenizationError
from transforms.sequence import TIMESTEP_TOO_LONG
from transforms.steps import emitted_steps
from transforms.task_tokenizer import TaskTokenizer, TokenizerConfig

TASK = "gato_metaworld/reach-v3"
# 2 state values + separator + 1 action: 4 tokens a timestep; raw_episode(4) emits 3 timesteps.
CONFIG = TokenizerConfig(task_fields={TASK: {"observation/state": continuous("linear"), "action": discrete()}})
LOCATION = f"file 'shard-0' (record 3), task '{TASK}'"  # EpisodeKey.location() of raw_episode


def _return(raw: RawEpisode) -> float:
    return float(raw.episode_metadata["episode_return"])


def _with_nan(episode_id: str) -> RawEpisode:
    raw = raw_episode(episode_id=episode_id)
    raw.steps["observation"]["state"][1, 1] = np.nan
    return raw


def _run(episodes: list[RawEpisode], config: TokenizerConfig = CONFIG):
    """A pipeline and the outputs of TokenizeEpisodes over `episodes` (run it after the asserts)."""
    p = TestPipeline(runner=RUNNER)
    out = p | beam.Create(episodes) | TokenizeEpisodes(config, return_fn=_return)
    return p, out


def test_tokenized_episodes_kept_and_rejected_with_exact_counts() -> None:
    good = [raw_episode(episode_id="1"), raw_episode(episode_id="2")]
    bad = _with_nan("3")
    expected_tokens = TaskTokenizer(CONFIG)(good[0].key, emitted_steps(good[0])).tokens.tolist()
    assert len(expected_tokens) == 12
    with pytest.raises(TokenizationError) as info:
        TaskTokenizer(CONFIG)(bad.key, emitted_steps(bad))
    p, out = _run([*good, bad])
    assert_that(
        out.tokenized | "Tokens" >> beam.MapTuple(lambda k, e: (k.episode_id, e.num_tokens, e.num_timesteps, e.tokens.tolist())),
        equal_to([("1", 12, 3, expected_tokens), ("2", 12, 3, expected_tokens)]),
        label="Tokenized",
    )
    assert_that(
        out[KEPT_TAG],
        equal_to([KeptEpisode(key=g.key, value=2.25, timesteps=3, tokens=12) for g in good]),
        label="Kept",
    )
    assert_that(
        out[REJECTS_TAG],
        equal_to([Reject("metaworld", TASK, "3", "shard-0", NON_FINITE, "observation/state",
                         f"{LOCATION}: {info.value}")]),
        label="Rejects",
    )
    result = p.run()
    result.wait_until_finish()
    task = ("metaworld", TASK)
    assert committed_counters(result, COUNTER_NAMESPACE) == {
        counter_name(task, "episodes"): 2,
        counter_name(task, "tokens"): 24,
        counter_name(task, "rejected"): 1,
    }
    assert str(info.value).startswith("episode '3', field 'observation/state', timestep 1: ")


def test_a_timestep_longer_than_the_sequence_is_rejected_before_it_counts_as_kept() -> None:
    config = TokenizerConfig(task_fields=CONFIG.task_fields, max_timestep_tokens=3)
    p, out = _run([raw_episode(episode_id="4")], config)
    assert_that(out.tokenized, equal_to([]), label="Tokenized")
    assert_that(out[KEPT_TAG], equal_to([]), label="Kept")
    assert_that(
        out[REJECTS_TAG] | beam.Map(lambda r: (r.episode_id, r.reason, r.field, r.detail.split(": ")[0])),
        equal_to([("4", TIMESTEP_TOO_LONG, None, LOCATION)]),
        label="Rejects",
    )
    result = p.run()
    result.wait_until_finish()
    assert committed_counters(result, COUNTER_NAMESPACE) == {counter_name(("metaworld", TASK), "rejected"): 1}


def test_strict_raises_a_value_error_naming_episode_field_and_timestep() -> None:
    with pytest.raises(ValueError, match=r"episode '5', field 'observation/state', timestep 1: continuous value"):
        with TestPipeline(runner=RUNNER) as p:
            _ = p | beam.Create([_with_nan("5")]) | TokenizeEpisodes(CONFIG, return_fn=_return, strict=True)
