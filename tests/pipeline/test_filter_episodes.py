"""pipeline/filter_episodes.py: `CollectReturns` merges partial accumulators to the same
threshold, and `ExpertThresholds` + `FilterEpisodes` keep exactly the brute-force set."""

from __future__ import annotations

import pickle
import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counters import counter_name
from pipeline.filter_episodes import (
    COUNTER_NAMESPACE,
    DECISIONS_TAG,
    CollectReturns,
    ExpertThresholds,
    FilterEpisodes,
)
from pipeline.rejects import REJECTS_TAG
from tests.episode_fixtures import brute_force
from transforms.episode import EpisodeKey, EpisodeReturn, RawEpisode, Reject
from transforms.expert_filter import expert_return, thresholds_from_pairs
from transforms.verdict import NON_FINITE_RETURN, TaskVerdicts


def _key(task: str, episode: str, order: tuple, source: str = "f0", index: int = 0) -> EpisodeKey:
    return EpisodeKey("atari", task, episode, order, source, index)


# --- CollectReturns ---


def test_partial_accumulators_merge_to_the_same_threshold() -> None:
    # Beam combines per bundle, pickles the partial results and merges them: the file
    # tables of the partials differ and must be remapped.
    rng = random.Random(9)
    pairs = [(_key("t", str(i), (i // 7,), f"f{rng.randint(0, 5)}", i).sort_key(), float(rng.randint(-21, 21))) for i in range(300)]
    combine = CollectReturns()
    partials = []
    for part in (pairs[:100], pairs[100:130], [], pairs[130:]):
        accumulator = combine.create_accumulator()
        for pair in part:
            accumulator = combine.add_input(accumulator, pair)
        partials.append(pickle.loads(pickle.dumps(accumulator)))
    merged = combine.extract_output(combine.merge_accumulators(partials))
    task = ("atari", "t")
    assert merged.threshold(task, fraction=0.8, cap=1000) == thresholds_from_pairs(task, pairs)
    expected_order = sorted(range(300), key=lambda i: pairs[i][0])
    assert merged.collection_order(task).tolist() == expected_order


# --- Beam stages ---


def _episodes() -> list[RawEpisode]:
    """Two tasks; Pong's order keys tie in checkpoint, broken by file and record."""
    rng = random.Random(11)
    episodes = []
    for i in range(37):
        key = _key("pong", f"p{i}", (i % 4,), f"shard{i % 3}", i)
        episodes.append(RawEpisode(key, {"reward": np.zeros(3)}, {"episode_return": float(rng.randint(-21, 5))}))
    for i in range(12):
        key = EpisodeKey("mujoco", "walker", f"w{i}", (i,), "s", i)
        rewards = np.full(4, 0.5 * i)  # no episode-level return: the sum of step rewards
        episodes.append(RawEpisode(key, {"reward": rewards}, {}))
    return episodes


def _return(episode: RawEpisode) -> float:
    if "episode_return" in episode.episode_metadata:
        return float(episode.episode_metadata["episode_return"])
    return float(np.sum(episode.steps["reward"]))


def _brute_force_kept(episodes: list[RawEpisode]) -> set[str]:
    kept: set[str] = set()
    tasks = {e.key.task_key for e in episodes}
    for task in tasks:
        mine = sorted((e for e in episodes if e.key.task_key == task), key=lambda e: e.key.sort_key())
        returns = [_return(e) for e in mine]
        _, _, threshold, _ = brute_force(returns)
        kept |= {e.key.episode_id for e, r in zip(mine, returns) if r >= threshold}
    return kept


@pytest.mark.parametrize("no_filter", [False, True])
def test_beam_filter_keeps_exactly_the_brute_force_set(no_filter: bool) -> None:
    episodes = _episodes()
    expected_kept = {e.key.episode_id for e in episodes} if no_filter else _brute_force_kept(episodes)
    assert 0 < len(_brute_force_kept(episodes)) < len(episodes)  # the filter really drops some
    # DirectRunner: the bundle-based runner drops the counters of elements it pushed back
    # while the side input was not ready yet.
    pipeline = TestPipeline(runner="DirectRunner")
    raw = pipeline | "Episodes" >> beam.Create(episodes)
    returns = raw | "Returns" >> beam.Map(lambda e: EpisodeReturn(e.key, _return(e), 3))
    thresholds = returns | ExpertThresholds()
    verdicts = thresholds | "Verdicts" >> beam.MapTuple(lambda task, t: (task, TaskVerdicts(expert=t)))
    result = raw | FilterEpisodes(beam.pvalue.AsDict(verdicts), return_fn=_return, no_filter=no_filter)
    assert_that(
        result.kept | "KeptIds" >> beam.Map(lambda e: e.key.episode_id),
        equal_to(sorted(expected_kept)),
        label="kept",
    )
    assert_that(
        result[DECISIONS_TAG] | "DecisionIds" >> beam.Map(lambda d: (d.key.episode_id, d.kept)),
        equal_to([(e.key.episode_id, e.key.episode_id in expected_kept) for e in episodes]),
        label="decisions",
    )
    assert_that(
        thresholds | "Windows" >> beam.MapTuple(lambda task, t: (task, t.n, t.window)),
        equal_to([(("atari", "pong"), 37, 3), (("mujoco", "walker"), 12, 1)]),
        label="thresholds",
    )
    run = pipeline.run()
    run.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in run.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))["counters"]
    }
    pong_kept = sum(1 for e in episodes if e.key.task == "pong" and e.key.episode_id in expected_kept)
    assert counters[counter_name(("atari", "pong"), "kept")] == pong_kept
    assert counters.get(counter_name(("atari", "pong"), "dropped"), 0) == 37 - pong_kept


def test_a_non_finite_return_and_pass_1_rejects_become_rejects_not_decisions() -> None:
    keys = [_key("t", f"e{i}", (i,), "f0", i) for i in range(4)]
    episodes = [RawEpisode(k, {"reward": np.zeros(3)}, {"episode_return": v}) for k, v in zip(keys, (1.0, np.inf, 2.0, np.nan))]
    from_pass_1 = Reject.of_episode(keys[2], reason="bad_shape", field="observation", detail="pass 1 says so")
    verdicts = {("atari", "t"): TaskVerdicts(expert=expert_return([1.0]), rejects={("f0", 2): from_pass_1})}
    pipeline = TestPipeline(runner="DirectRunner")
    raw = pipeline | "Episodes" >> beam.Create(episodes)
    side = pipeline | "Verdicts" >> beam.Create(list(verdicts.items()))
    result = raw | FilterEpisodes(beam.pvalue.AsDict(side), return_fn=_return, return_field="episode_return")
    assert_that(
        result[DECISIONS_TAG] | "Decided" >> beam.Map(lambda d: (d.key.episode_id, d.kept)), equal_to([("e0", True)]),
        label="decisions",
    )
    assert_that(
        result[REJECTS_TAG] | "Rejected" >> beam.Map(lambda r: (r.episode_id, r.reason, r.field, r.detail[:40])),
        equal_to([
            ("e1", NON_FINITE_RETURN, "episode_return", "file 'f0' (record 1), task 't', episode "),
            ("e2", "bad_shape", "observation", "pass 1 says so"),
            ("e3", NON_FINITE_RETURN, "episode_return", "file 'f0' (record 3), task 't', episode "),
        ]),
        label="rejects",
    )
    pipeline.run().wait_until_finish()


def test_strict_raises_on_a_non_finite_return() -> None:
    key = _key("t", "e0", (0,), "f0", 0)
    pipeline = TestPipeline(runner="DirectRunner")
    raw = pipeline | "Episodes" >> beam.Create([RawEpisode(key, {"reward": np.zeros(3)}, {"episode_return": np.inf})])
    side = pipeline | "Verdicts" >> beam.Create([(("atari", "t"), TaskVerdicts(expert=None))])
    _ = raw | FilterEpisodes(beam.pvalue.AsDict(side), return_fn=_return, return_field="episode_return", strict=True)
    with pytest.raises(Exception, match=r"file 'f0' \(record 0\), task 't', episode 'e0': the return \(from 'episode_return'\) is inf"):
        pipeline.run().wait_until_finish()
