"""pipeline/validate_episodes.py: ValidateEpisodes on the BundleBasedDirectRunner: valid
episodes on the main output, a Reject per broken one (counted), strict mode raising."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counters import counter_name
from pipeline.rejects import REJECTS_TAG as REJECTS
from pipeline.validate_episodes import COUNTER_NAMESPACE, ValidateEpisodes
from tests.pipeline.pipeline_fixtures import RUNNER, committed_counters, raw_episode
from transforms.rlds_rules import RLDS_IS_LAST


def test_validate_episodes_in_beam() -> None:
    good = raw_episode(episode_id="1")
    bad = raw_episode(episode_id="2", last=[])
    with TestPipeline(runner=RUNNER) as p:
        out = p | beam.Create([good, bad]) | ValidateEpisodes()
        assert_that(out.valid | "ValidIds" >> beam.Map(lambda r: r.key.episode_id), equal_to(["1"]), label="Valid")
        assert_that(
            out[REJECTS] | "Reasons" >> beam.Map(lambda r: (r.episode_id, r.reason)),
            equal_to([("2", RLDS_IS_LAST)]),
            label="Rejects",
        )


def test_validate_episodes_strict_raises() -> None:
    bad = raw_episode(last=[])
    with pytest.raises(Exception, match="'is_last' must be True exactly at the final step"):
        with TestPipeline(runner=RUNNER) as p:
            _ = p | beam.Create([bad]) | ValidateEpisodes(strict=True)


def test_validate_episodes_counts_rejects_per_task() -> None:
    episodes = [raw_episode(episode_id="1"), raw_episode(episode_id="2", last=[]),
                raw_episode(episode_id="3", first=[1])]
    p = TestPipeline(runner=RUNNER)
    _ = p | beam.Create(episodes) | ValidateEpisodes()
    result = p.run()
    result.wait_until_finish()
    task = ("metaworld", "gato_metaworld/reach-v3")
    assert committed_counters(result, COUNTER_NAMESPACE) == {counter_name(task, "rejected"): 2}
