"""The statistics Beam stage (pipeline/task_statistics.py): per-task books grouped from
the job's collections, balanced, written and read back; wired to the filter and to the
sequencing stages as in the job."""

from __future__ import annotations

import math
import pathlib
import random

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from formats.stats_files import read_stats_records
from pipeline.filter_episodes import ExpertThresholds
from pipeline.prompt_pools import PromptPools
from pipeline.rejects import REJECTS_TAG
from pipeline.sequence_episodes import COUNTS_TAG, SequenceEpisodes
from pipeline.task_statistics import (
    DECISIONS,
    KEPT,
    REJECTS,
    RETURNS,
    SEQUENCE_COUNTS,
    THRESHOLDS,
    TaskStatistics,
)
from schemas import output as out
from tests.sequence_fixtures import make_episode
from tests.transforms.test_books import SEQUENCING_COLUMNS
from transforms.episode import EpisodeKey, EpisodeReturn, KeptEpisode, Reject
from transforms.expert_filter import decide, expert_return
from transforms.prompt_choice import prompt_candidate_for
from transforms.prompts import slice_timesteps
from transforms.sequence import TIMESTEP_TOO_LONG, SequenceConfig
from transforms.verdict import TaskVerdicts


def _synthetic_job_inputs() -> tuple[list, list, list, list, set[str]]:
    """EpisodeReturns, decisions, kept and rejects for two tasks, as the job would produce them."""
    rng = random.Random(3)
    returns, decisions, kept, rejects = [], [], [], []
    expected_kept: set[str] = set()
    for dataset, task, n in (("atari", "rlu_atari/Pong_run_1", 53), ("dmlab", "explore", 25)):
        episodes = [EpisodeKey(dataset, task, f"{task}-{i}", (i // 5, i % 5), f"shard{i % 2}", i) for i in range(n)]
        values = [float(rng.randint(-21, 21)) if dataset == "atari" else rng.uniform(0, 100) for _ in episodes]
        returns += [EpisodeReturn(k, v, 7) for k, v in zip(episodes, values)]
        threshold = expert_return(values)  # episodes are already in collection order here
        for k, v in zip(episodes, values):
            decision = decide(k, v, threshold, no_filter=False)
            decisions.append(decision)
            if decision.kept and k.index_in_file % 4 == 1:
                rejects.append(Reject(dataset, task, k.episode_id, k.source_file, "non_finite", "observation/x", "NaN"))
            elif decision.kept:
                kept.append(KeptEpisode(k, v, 7, 70))
                expected_kept.add(k.episode_id)
    rejects.append(Reject("atari", "rlu_atari/Pong_run_1", None, "shard9", "corrupt_record", None, "CRC mismatch"))
    rejects.append(Reject("atari", "rlu_atari/Breakout_run_1", "b0", "shard0", "rlds_is_last", None, "no is_last"))
    return returns, decisions, kept, rejects, expected_kept


def _run_stage(output_dir: pathlib.Path, returns: list, decisions: list, kept: list, rejects: list) -> None:
    """TaskStatistics on the job's elements (thresholds from ExpertThresholds, as in the job)."""
    with TestPipeline(runner="BundleBasedDirectRunner") as pipeline:
        returns_pc = pipeline | "Returns" >> beam.Create(returns)
        inputs = {
            THRESHOLDS: returns_pc | ExpertThresholds(),
            RETURNS: returns_pc,
            DECISIONS: pipeline | "Decisions" >> beam.Create(decisions),
            KEPT: pipeline | "Kept" >> beam.Create(kept),
            REJECTS: pipeline | "Rejects" >> beam.Create(rejects),
        }
        paths = inputs | TaskStatistics(str(output_dir))
        assert_that(
            paths,
            equal_to([{"parquet": out.STATS_PARQUET_FILE, "json": out.STATS_JSON_FILE,
                       "episodes": out.STATS_EPISODES_FILE, "report": out.REPORT_FILE}]),
        )


def test_beam_stage_writes_balanced_books(tmp_path: pathlib.Path) -> None:
    returns, decisions, kept, rejects, expected_kept = _synthetic_job_inputs()
    _run_stage(tmp_path, returns, decisions, kept, rejects)
    records = read_stats_records(str(tmp_path))
    table = pq.read_table(tmp_path / out.STATS_PARQUET_FILE)
    assert table.schema.equals(out.STATS_SCHEMA)
    assert [(r[out.DATASET], r[out.TASK]) for r in records] == [
        ("atari", "rlu_atari/Breakout_run_1"), ("atari", "rlu_atari/Pong_run_1"), ("dmlab", "explore"),
    ]
    per_task_read = {(r.key.dataset, r.key.task) for r in returns}
    for record, row in zip(records, table.to_pylist()):
        assert record[out.ST_EPISODES_READ] == record[out.ST_KEPT] + record[out.ST_DROPPED] + record[out.ST_REJECTED]
        row[out.ST_REJECTED_BY_REASON] = dict(row[out.ST_REJECTED_BY_REASON])
        assert row == record  # Parquet and JSON carry the same numbers
        task = (record[out.DATASET], record[out.TASK])
        if task in per_task_read:
            n = sum(1 for r in returns if (r.key.dataset, r.key.task) == task)
            extra = 1 if task[1].startswith("rlu_atari/Pong") else 0  # the unreadable record
            assert record[out.ST_EPISODES_READ] == n + extra
    episodes = pq.read_table(tmp_path / out.STATS_EPISODES_FILE).to_pylist()
    assert {e[out.EPISODE_ID] for e in episodes if e[out.EP_DECISION] == out.DECISION_KEPT} == expected_kept
    assert len(episodes) == sum(r[out.ST_EPISODES_READ] for r in records)
    assert (tmp_path / out.REPORT_FILE).read_text().startswith("<!DOCTYPE html>")
    # No SEQUENCE_COUNTS input (a caller that does not sequence): the columns are 0.
    assert all(record[c] == 0 for record in records for c in SEQUENCING_COLUMNS)


def test_filter_and_statistics_compose_as_in_the_job(tmp_path: pathlib.Path) -> None:
    """RawEpisodes -> returns -> thresholds -> filter -> (a stand-in tokenizer) -> stats:
    the kept episodes are exactly those the spec's brute force keeps, minus tokenizer rejects."""
    from pipeline.filter_episodes import DECISIONS_TAG, FilterEpisodes
    from transforms.episode import RawEpisode

    rng = random.Random(17)
    episodes = [
        RawEpisode(EpisodeKey("atari", "rlu_atari/Pong_run_1", f"p{i}", (i // 6,), f"shard{i % 3}", i),
                   {"reward": np.array([float(rng.randint(-3, 1)) for _ in range(5)])}, {})
        for i in range(64)
    ]

    def episode_return(episode: RawEpisode) -> float:
        return float(np.sum(episode.steps["reward"]))

    def tokenize(episode: RawEpisode):
        # Stand-in for the tokenizer: every 5th episode turns out to hold bad input.
        if episode.key.index_in_file % 5 == 0:
            key = episode.key
            return Reject(key.dataset, key.task, key.episode_id, key.source_file, "non_finite", "observation/x", "NaN")
        return KeptEpisode(episode.key, episode_return(episode), 4, 40)

    ordered = sorted(episodes, key=lambda e: e.key.sort_key())
    values = [episode_return(e) for e in ordered]
    w = max(1, min(1000, len(values) // 10))
    expert = max(math.fsum(values[j : j + w]) / w for j in range(len(values) - w + 1))
    threshold = expert - 0.2 * abs(expert)
    brute_kept = {e.key.episode_id for e, v in zip(ordered, values) if v >= threshold}
    expected_kept = {e.key.episode_id for e in episodes if e.key.episode_id in brute_kept and e.key.index_in_file % 5}
    assert 0 < len(expected_kept) < len(brute_kept) < len(episodes)  # some dropped, some rejected

    with TestPipeline(runner="BundleBasedDirectRunner") as pipeline:
        raw = pipeline | beam.Create(episodes)
        returns = raw | "Returns" >> beam.Map(lambda e: EpisodeReturn(e.key, episode_return(e), 4))
        thresholds = returns | ExpertThresholds()
        verdicts = thresholds | "Verdicts" >> beam.MapTuple(lambda task, t: (task, TaskVerdicts(expert=t)))
        filtered = raw | FilterEpisodes(beam.pvalue.AsDict(verdicts), return_fn=episode_return)
        tokenized = filtered.kept | "Tokenize" >> beam.Map(tokenize)
        inputs = {
            THRESHOLDS: thresholds,
            RETURNS: returns,
            DECISIONS: filtered[DECISIONS_TAG],
            KEPT: tokenized | "OnlyKept" >> beam.Filter(lambda x: isinstance(x, KeptEpisode)),
            REJECTS: tokenized | "OnlyRejects" >> beam.Filter(lambda x: isinstance(x, Reject)),
        }
        _ = inputs | TaskStatistics(str(tmp_path))
    (record,) = read_stats_records(str(tmp_path))
    assert record[out.ST_EXPERT_RETURN] == expert and record[out.ST_THRESHOLD] == threshold
    assert record[out.ST_EPISODES_READ] == 64 == record[out.ST_KEPT] + record[out.ST_DROPPED] + record[out.ST_REJECTED]
    assert record[out.ST_DROPPED] == 64 - len(brute_kept)
    rows = pq.read_table(tmp_path / out.STATS_EPISODES_FILE).to_pylist()
    assert {r[out.EPISODE_ID] for r in rows if r[out.EP_DECISION] == out.DECISION_KEPT} == expected_kept
    assert [r[out.EPISODE_ID] for r in rows] == [e.key.episode_id for e in ordered]


# --- sequencing counts from the real stages (issue 5) ---

SEQUENCING = SequenceConfig(sequence_length=24, prompt_fraction=0.5, seed=5)


def test_prompts_reach_the_statistics_and_a_one_episode_task_gets_none(tmp_path: pathlib.Path) -> None:
    """Prompt pools -> SequenceEpisodes -> statistics, wired as in the job: a task of one
    episode has no other episode to prompt from, so prompted is 0 and its draws show up as
    prompts_unavailable; a task of many equally good episodes prompts about `prompt_fraction`
    of its rows. A sequencing reject leaves the kept count and the sequenced count equal."""
    many, solo = ("toy", "many"), ("toy", "solo")
    episodes = [(many, f"m{i}", make_episode([2] * 60, seed=i).episode) for i in range(6)]
    episodes.append((many, "long", make_episode([2, 30, 2], seed=7).episode))  # 34 tokens > L
    episodes.append((solo, "s0", make_episode([2] * 60, seed=8).episode))
    keys = [EpisodeKey(t[0], t[1], e, (i,), "shard-0", i) for i, (t, e, _) in enumerate(episodes)]
    value = 5.0  # every episode at E: all kept, all eligible as prompts
    returns = [EpisodeReturn(k, value, ep.num_timesteps) for k, (_, _, ep) in zip(keys, episodes)]
    thresholds = {task: expert_return([value] * sum(1 for t, _, _ in episodes if t == task)) for task in (many, solo)}
    decisions = [decide(k, value, thresholds[k.task_key], no_filter=False) for k in keys]
    assert all(d.kept for d in decisions)
    kept = [KeptEpisode(k, value, ep.num_timesteps, int(ep.tokens.size)) for k, (_, _, ep) in zip(keys, episodes)]
    candidates = [
        prompt_candidate_for(k, value, ep.num_timesteps, lambda a, b, ep=ep: slice_timesteps(ep, a, b), config=SEQUENCING)
        for k, (_, _, ep) in zip(keys, episodes)
    ]
    with TestPipeline(runner="BundleBasedDirectRunner") as pipeline:
        thresholds_pc = pipeline | "Thresholds" >> beam.Create(list(thresholds.items()))
        pools = pipeline | "Candidates" >> beam.Create(candidates) | PromptPools()
        sequenced = (
            pipeline
            | "Tokenized" >> beam.Create([(k, ep) for k, (_, _, ep) in zip(keys, episodes)])
            | "Sequence" >> beam.ParDo(
                SequenceEpisodes(SEQUENCING), beam.pvalue.AsDict(pools), beam.pvalue.AsDict(thresholds_pc)
            ).with_outputs(REJECTS_TAG, COUNTS_TAG, main="sequences")
        )
        inputs = {
            THRESHOLDS: thresholds_pc,
            RETURNS: pipeline | "Returns" >> beam.Create(returns),
            DECISIONS: pipeline | "Decisions" >> beam.Create(decisions),
            KEPT: pipeline | "Kept" >> beam.Create(kept),
            REJECTS: sequenced[REJECTS_TAG],
            SEQUENCE_COUNTS: sequenced[COUNTS_TAG],
        }
        _ = inputs | TaskStatistics(str(tmp_path))
    by_task = {(r[out.DATASET], r[out.TASK]): r for r in read_stats_records(str(tmp_path))}
    one, normal = by_task[solo], by_task[many]
    assert (one[out.ST_KEPT], normal[out.ST_KEPT], normal[out.ST_REJECTED]) == (1, 6, 1)
    assert normal[out.ST_REJECTED_BY_REASON] == {TIMESTEP_TOO_LONG: 1}
    # One episode: no prompt at all, every row unprompted, half of them wanted one.
    assert one[out.ST_PROMPTED_SEQUENCES] == 0
    assert one[out.ST_UNPROMPTED_SEQUENCES] == one[out.ST_SEQUENCES] == 10  # 60 timesteps of 4 tokens, L = 24
    assert 0 < one[out.ST_PROMPTS_UNAVAILABLE] < one[out.ST_SEQUENCES]
    assert one[out.ST_SEQUENCE_TOKENS] == one[out.ST_KEPT_TOKENS]  # no prompt tokens added
    # Many episodes: every draw finds a prompt; the share prompted is near the fraction.
    assert normal[out.ST_PROMPTS_UNAVAILABLE] == 0
    assert normal[out.ST_PROMPTED_SEQUENCES] + normal[out.ST_UNPROMPTED_SEQUENCES] == normal[out.ST_SEQUENCES] >= 60
    assert abs(normal[out.ST_PROMPTED_SEQUENCES] / normal[out.ST_SEQUENCES] - SEQUENCING.prompt_fraction) < 0.15
    assert normal[out.ST_SEQUENCE_TOKENS] > normal[out.ST_KEPT_TOKENS]  # prompts included
    report = (tmp_path / out.REPORT_FILE).read_text()
    assert report.count("no other eligible episode for prompts") == 2  # the solo task's table row and section


def test_only_small_records_and_part_paths_are_gathered(tmp_path: pathlib.Path, monkeypatch) -> None:
    # Issue 14, item 4: "AllTasks" used to gather every task's (record, per-episode table)
    # on one worker; now each task's table is written by its own element and only
    # (record, part path) pairs meet, streamed one part at a time into episodes.parquet.
    from pipeline import task_statistics as stage

    gathered: list = []
    real_write = stage.write_statistics

    def spy(output_dir: str, results: list) -> dict:
        gathered.extend(results)
        return real_write(output_dir, results)

    monkeypatch.setattr(stage, "write_statistics", spy)
    returns, decisions, kept, rejects, _ = _synthetic_job_inputs()
    _run_stage(tmp_path, returns, decisions, kept, rejects)
    assert len(gathered) == 3 and all(isinstance(part, str) for _, part in gathered)
    assert all(f"/{out.TMP_DIR}/stats/" in part for _, part in gathered)
    assert not (tmp_path / out.TMP_DIR / "stats").exists()  # the parts are gone once merged
    metadata = pq.ParquetFile(tmp_path / out.STATS_EPISODES_FILE).metadata
    assert metadata.num_row_groups == 3  # one per task
