"""Beam stages of sequencing: prompt pools (pass 1) and SequenceEpisodes (pass 2)."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.episode import EpisodeKey, Reject
from pipeline.prompt_pools import PromptPoolCombine, PromptPools
from pipeline.rejects import REJECTS_TAG
from pipeline.sequence_episodes import COUNTER_NAMESPACE, COUNTS_TAG, SequenceEpisodes, SumSequenceCounts
from transforms.books import SequenceCounts
from transforms.prompt_choice import prompt_candidate_for
from tests.sequence_fixtures import check_sequences, make_episode
from transforms.prompts import PromptPool, slice_timesteps, top_candidates
from transforms.sequence import TIMESTEP_TOO_LONG, SequenceConfig, SequencingError

RUNNER = "BundleBasedDirectRunner"
CONFIG = SequenceConfig(sequence_length=24, prompt_fraction=0.5, seed=11)


@dataclasses.dataclass(frozen=True)
class _Threshold:
    threshold: float


def _key(task: str, episode_id: str, index: int = 0) -> EpisodeKey:
    return EpisodeKey("toy", task, episode_id, (index,), f"shard-{task[-1]}.tfrecord", index, 0)


def _candidate(task: str, episode_id: str, value: float, seed: int):
    episode = make_episode([1 + (seed + t) % 3 for t in range(12)], seed=seed).episode
    return prompt_candidate_for(
        _key(task, episode_id), value, episode.num_timesteps,
        lambda a, b: slice_timesteps(episode, a, b), config=CONFIG,
    )


def test_candidates_only_tokenize_windows_within_the_budget() -> None:
    (task, candidate) = _candidate("t/a", "e1", 3.0, 0)
    assert task == ("toy", "t/a") and candidate.episode_return == 3.0
    assert candidate.windows and all(w.num_tokens <= CONFIG.budget for w in candidate.windows)


def _summary(pool: PromptPool) -> tuple:
    """A comparable digest of a pool (its windows hold numpy arrays)."""
    return (pool.capacity, tuple(
        (c.episode_id, c.episode_return, c.rank, tuple((w.kind, w.start, w.tokens.tokens.tobytes()) for w in c.windows))
        for c in pool.candidates
    ))


def test_pool_combine_keeps_the_top_k_per_task() -> None:
    inputs = [_candidate(f"t/{'ab'[i % 2]}", f"e{i}", float(i % 9), i) for i in range(30)]
    expected = {
        task: PromptPool(top_candidates([c for t, c in inputs if t == task], 4), 4)
        for task in {t for t, _ in inputs}
    }
    with TestPipeline(runner=RUNNER) as p:
        pools = p | beam.Create(inputs) | PromptPools(capacity=4)
        summary = pools | beam.MapTuple(lambda task, pool: (task, _summary(pool)))
        assert_that(summary, equal_to([(t, _summary(pool)) for t, pool in expected.items()]))
    # Merging partial pools in any grouping gives the same pool.
    combine = PromptPoolCombine(4)
    parts = [combine.add_inputs(combine.create_accumulator(), [c for _, c in inputs[i::3]]) for i in range(3)]
    whole = combine.add_inputs(combine.create_accumulator(), [c for _, c in inputs])
    assert _summary(combine.merge_accumulators(parts)) == _summary(whole)
    assert len(whole.candidates) == 4
    assert [c.episode_return for c in whole.candidates] == [8.0, 8.0, 8.0, 7.0]


# In-process runner: a module-level sink is shared by reference, not pickled by value.
_SINK: dict[str, list] = {}


def _keep(element: object, name: str) -> None:
    _SINK.setdefault(name, []).append(element)


def _run_sequence_stage(elements, pools, thresholds, *, strict: bool = False):
    p = TestPipeline(runner=RUNNER)
    out = (
        p
        | "Episodes" >> beam.Create(elements)
        | "Sequence" >> beam.ParDo(
            SequenceEpisodes(CONFIG, strict=strict),
            beam.pvalue.AsDict(p | "Pools" >> beam.Create(pools)),
            beam.pvalue.AsDict(p | "Thresholds" >> beam.Create(thresholds)),
        ).with_outputs(REJECTS_TAG, COUNTS_TAG, main="sequences")
    )
    _ = out[COUNTS_TAG] | "SumCounts" >> SumSequenceCounts() | "KeepCounts" >> beam.Map(_keep, "counts")
    _SINK.clear()
    _ = out.sequences | "KeepBatches" >> beam.Map(_keep, "batches")
    _ = out[REJECTS_TAG] | "KeepRejects" >> beam.Map(_keep, "rejects")
    result = p.run()
    result.wait_until_finish()
    counters = {
        m.key.metric.name: m.committed
        for m in result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))["counters"]
    }
    counters["per_task"] = dict(_SINK.get("counts", []))
    return _SINK.get("batches", []), _SINK.get("rejects", []), counters


def test_sequence_stage_prompts_only_from_eligible_other_episodes() -> None:
    built = {f"e{i}": make_episode([2, 3, 1, 4] * 10, patches=1, seed=i) for i in range(4)}
    solo = make_episode([2] * 60, seed=9)
    long = make_episode([2, 30, 2], seed=10)
    elements = [(_key("t/a", e, i), b.episode) for i, (e, b) in enumerate(built.items())]
    elements += [(_key("t/b", "solo"), solo.episode), (_key("t/a", "long", 9), long.episode)]
    pool_a = PromptPool().merged(
        [_candidate("t/a", e, v, s)[1] for e, v, s in [("e0", 5.0, 0), ("e1", 4.0, 1), ("low", 0.5, 2)]]
    )
    pool_b = PromptPool().merged([_candidate("t/b", "solo", 1.0, 3)[1]])
    thresholds = [(("toy", "t/a"), _Threshold(1.0)), (("toy", "t/b"), _Threshold(0.0))]
    batches, rejects, counters = _run_sequence_stage(
        elements, [(("toy", "t/a"), pool_a), (("toy", "t/b"), pool_b)], thresholds
    )
    by_id = {k.episode_id: b for k, b in batches}
    assert set(by_id) == {"e0", "e1", "e2", "e3", "solo"}
    for episode_id, built_episode in built.items():
        batch = by_id[episode_id]
        check_sequences(batch, built_episode.episode, length=CONFIG.sequence_length)
        used = {p for p in batch.prompt_episode_id if p is not None}
        assert used <= {"e0", "e1"} - {episode_id}  # "low" is below the threshold
    assert sum(by_id[e].num_prompted for e in built) > 0
    assert by_id["solo"].num_prompted == 0 and by_id["solo"].prompts_unavailable > 0

    [reject] = rejects
    assert isinstance(reject, Reject)
    assert (reject.episode_id, reject.reason, reject.source_file) == ("long", TIMESTEP_TOO_LONG, "shard-a.tfrecord")
    assert "timestep 1" in reject.detail

    a = [by_id[e] for e in built]
    assert counters["toy/t/a/sequences"] == sum(b.num_sequences for b in a)
    assert counters["toy/t/a/prompted_sequences"] == sum(b.num_prompted for b in a)
    assert counters["toy/t/a/unprompted_sequences"] == sum(b.num_unprompted for b in a)
    assert counters["toy/t/a/sequence_tokens"] == sum(b.total_tokens for b in a)
    assert counters["toy/t/a/rejected"] == 1
    assert counters["toy/t/b/unprompted_sequences"] == by_id["solo"].num_sequences
    assert counters["toy/t/b/prompts_unavailable"] == by_id["solo"].prompts_unavailable
    assert "toy/t/b/prompted_sequences" not in counters
    # The same figures reach the statistics as elements.
    per_task = counters["per_task"]
    assert per_task[("toy", "t/b")] == SequenceCounts.of(by_id["solo"])
    assert per_task[("toy", "t/a")] == SequenceCounts(
        episodes=4,
        sequences=counters["toy/t/a/sequences"],
        prompted=counters["toy/t/a/prompted_sequences"],
        unprompted=counters["toy/t/a/unprompted_sequences"],
        prompts_unavailable=counters.get("toy/t/a/prompts_unavailable", 0),
        tokens=counters["toy/t/a/sequence_tokens"],
    )


def test_without_threshold_or_pool_every_candidate_counts_or_none_exists() -> None:
    built = make_episode([2] * 40, seed=1)
    pool = PromptPool().merged([_candidate("t/a", "other", -100.0, 4)[1]])
    batches, rejects, _ = _run_sequence_stage(
        [(_key("t/a", "x"), built.episode), (_key("t/c", "y"), built.episode)],
        [(("toy", "t/a"), pool)], [],
    )
    by_id = {k.episode_id: b for k, b in batches}
    assert by_id["x"].num_prompted > 0 and set(by_id["x"].prompt_episode_id) == {None, "other"}
    assert by_id["y"].num_prompted == 0 and by_id["y"].prompts_unavailable > 0
    assert rejects == []


def test_strict_stops_with_file_and_episode() -> None:
    long = make_episode([2, 30], seed=10)
    with pytest.raises(Exception, match=r"episode 'long', timestep 1: file 'shard-a.tfrecord'") as info:
        _run_sequence_stage([(_key("t/a", "long"), long.episode)], [], [], strict=True)
    assert "timestep_too_long" in str(info.value)
    assert isinstance(info.value, (SequencingError, RuntimeError, ValueError))
