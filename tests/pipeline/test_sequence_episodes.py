"""pipeline/sequence_episodes.py: SequenceEpisodes prompts only from eligible other episodes
of the task (pool and threshold side inputs), rejects or (strict) raises on a timestep
longer than L, and counts per task; SumSequenceCounts sums the per-episode counts."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from pipeline.rejects import REJECTS_TAG
from pipeline.sequence_episodes import COUNTER_NAMESPACE, COUNTS_TAG, SequenceEpisodes, SumSequenceCounts
from tests.pipeline.pipeline_fixtures import RUNNER, SEQUENCE_CONFIG, committed_counters, toy_candidate, toy_key
from tests.sequence_fixtures import check_sequences, make_episode
from transforms.books import SequenceCounts
from transforms.episode import Reject
from transforms.prompts import PromptPool
from transforms.sequence import TIMESTEP_TOO_LONG, SequencingError


@dataclasses.dataclass(frozen=True)
class _Threshold:
    threshold: float


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
            SequenceEpisodes(SEQUENCE_CONFIG, strict=strict),
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
    counters: dict = committed_counters(result, COUNTER_NAMESPACE)
    counters["per_task"] = dict(_SINK.get("counts", []))
    return _SINK.get("batches", []), _SINK.get("rejects", []), counters


def test_sequence_stage_prompts_only_from_eligible_other_episodes() -> None:
    built = {f"e{i}": make_episode([2, 3, 1, 4] * 10, patches=1, seed=i) for i in range(4)}
    solo = make_episode([2] * 60, seed=9)
    long = make_episode([2, 30, 2], seed=10)
    elements = [(toy_key("t/a", e, i), b.episode) for i, (e, b) in enumerate(built.items())]
    elements += [(toy_key("t/b", "solo"), solo.episode), (toy_key("t/a", "long", 9), long.episode)]
    pool_a = PromptPool().merged(
        [toy_candidate("t/a", e, v, s)[1] for e, v, s in [("e0", 5.0, 0), ("e1", 4.0, 1), ("low", 0.5, 2)]]
    )
    pool_b = PromptPool().merged([toy_candidate("t/b", "solo", 1.0, 3)[1]])
    thresholds = [(("toy", "t/a"), _Threshold(1.0)), (("toy", "t/b"), _Threshold(0.0))]
    batches, rejects, counters = _run_sequence_stage(
        elements, [(("toy", "t/a"), pool_a), (("toy", "t/b"), pool_b)], thresholds
    )
    by_id = {k.episode_id: b for k, b in batches}
    assert set(by_id) == {"e0", "e1", "e2", "e3", "solo"}
    for episode_id, built_episode in built.items():
        batch = by_id[episode_id]
        check_sequences(batch, built_episode.episode, length=SEQUENCE_CONFIG.sequence_length)
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
    pool = PromptPool().merged([toy_candidate("t/a", "other", -100.0, 4)[1]])
    batches, rejects, _ = _run_sequence_stage(
        [(toy_key("t/a", "x"), built.episode), (toy_key("t/c", "y"), built.episode)],
        [(("toy", "t/a"), pool)], [],
    )
    by_id = {k.episode_id: b for k, b in batches}
    assert by_id["x"].num_prompted > 0 and set(by_id["x"].prompt_episode_id) == {None, "other"}
    assert by_id["y"].num_prompted == 0 and by_id["y"].prompts_unavailable > 0
    assert rejects == []


def test_strict_stops_with_file_and_episode() -> None:
    long = make_episode([2, 30], seed=10)
    with pytest.raises(Exception, match=r"episode 'long', timestep 1: file 'shard-a.tfrecord'") as info:
        _run_sequence_stage([(toy_key("t/a", "long"), long.episode)], [], [], strict=True)
    assert "timestep_too_long" in str(info.value)
    assert isinstance(info.value, (SequencingError, RuntimeError, ValueError))
