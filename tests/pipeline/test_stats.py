"""Per-task statistics: exact numbers, the books (read = kept + dropped + rejected), files."""

from __future__ import annotations

import json
import math
import os
import pathlib
import random
import re

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.episode import EpisodeKey, EpisodeReturn, KeptEpisode, Reject
from pipeline.filter_episodes import ExpertThresholds
from transforms.expert_filter import decide, expert_return
from audit.report import write_report
from formats.stats_files import read_stats_records
from pipeline.prompt_pools import PromptPools
from pipeline.rejects import REJECTS_TAG
from pipeline.sequence_episodes import COUNTS_TAG, SequenceEpisodes
from transforms.books import SequenceCounts
from transforms.prompt_choice import prompt_candidate_for
from formats.stats_files import write_statistics
from pipeline.task_statistics import DECISIONS, KEPT, REJECTS, RETURNS, SEQUENCE_COUNTS, THRESHOLDS, TaskStatistics
from transforms.books import StatsOptions, downsample_curve, histogram_edges, task_statistics
from schemas import output as out
from tests.sequence_fixtures import make_episode
from transforms.prompts import slice_timesteps
from transforms.sequence import TIMESTEP_TOO_LONG, SequenceConfig

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "stats"
TASK = ("atari", "rlu_atari/Pong_run_1")


def _returns(values: list[float]) -> list[tuple]:
    """Return rows in collection order: sort key, id, return, file."""
    return [(((i,), "shard-0", i), f"e{i}", float(v), "shard-0") for i, v in enumerate(values)]


def _books(values: list[float], *, tokenize_reject: set[str] = frozenset(), fraction: float = 0.8):
    threshold = expert_return(values, fraction=fraction)
    decisions = [(f"e{i}", threshold.keeps(v), "r") for i, v in enumerate(values)]
    kept = [(f"e{i}", float(v), 3, 30) for i, v in enumerate(values) if threshold.keeps(v) and f"e{i}" not in tokenize_reject]
    rejects = [(episode, "shard-0", "non_finite", "observation/x", "NaN") for episode in sorted(tokenize_reject)]
    return threshold, decisions, kept, rejects


def test_exact_numbers_of_one_task() -> None:
    values = [-21.0, -20.0, -19.0, -15.0, -18.0, -10.0, -9.0, -12.0, -8.0, -11.0, -20.0, -9.0]
    threshold, decisions, kept, rejects = _books(values, tokenize_reject={"e8"})
    rejects.append((None, "shard-1", "corrupt_record", None, "bad CRC"))
    record, episodes = task_statistics(
        TASK, threshold=threshold, returns=_returns(values), decisions=decisions, kept=kept, rejects=rejects
    )
    # W = 1 (N = 12), E = -8, threshold = -8 - 0.2 * 8 = -9.6: kept -9, -8, -9; -8 rejected later.
    assert record[out.ST_WINDOW] == 1 and record[out.ST_EXPERT_RETURN] == -8.0
    assert record[out.ST_THRESHOLD] == -9.6 and record[out.ST_WINDOW_START] == 8
    assert (record[out.ST_KEPT], record[out.ST_DROPPED], record[out.ST_REJECTED]) == (2, 9, 2)
    assert record[out.ST_EPISODES_READ] == 13 and record[out.ST_EPISODES_WITH_RETURN] == 12
    assert record[out.ST_REJECTED_BY_REASON] == {"corrupt_record": 1, "non_finite": 1}
    assert (record[out.ST_RETURN_MIN], record[out.ST_RETURN_MEDIAN], record[out.ST_RETURN_MAX]) == (-21.0, -13.5, -8.0)
    assert (record[out.ST_KEPT_RETURN_MIN], record[out.ST_KEPT_RETURN_MEDIAN], record[out.ST_KEPT_RETURN_MAX]) == (-9.0, -9.0, -9.0)
    assert (record[out.ST_KEPT_TIMESTEPS], record[out.ST_KEPT_TOKENS]) == (6, 60)
    assert sum(record[out.ST_HISTOGRAM_ALL]) == 12 and sum(record[out.ST_HISTOGRAM_KEPT]) == 2
    assert len(record[out.ST_HISTOGRAM_EDGES]) == 21
    assert record[out.ST_HISTOGRAM_EDGES][0] == -21.0 and record[out.ST_HISTOGRAM_EDGES][-1] == -8.0
    assert record[out.ST_WINDOWED_MEAN] == values and record[out.ST_WINDOWED_MEAN_START] == list(range(12))
    rows = episodes.to_pylist()
    assert [r[out.EP_DECISION] for r in rows] == ["dropped"] * 6 + ["kept", "dropped", "rejected", "dropped", "dropped", "kept", "rejected"]
    assert rows[8][out.REASON] == "non_finite" and rows[8][out.EP_COLLECTION_INDEX] == 8
    assert rows[-1] == {
        out.DATASET: TASK[0], out.TASK: TASK[1], out.EPISODE_ID: None, out.EP_COLLECTION_INDEX: None,
        out.EP_RETURN: None, out.EP_DECISION: "rejected", out.REASON: "corrupt_record", out.SOURCE_FILE: "shard-1",
    }


def test_episodes_table_follows_collection_order_not_arrival() -> None:
    values = [float(v) for v in range(20)]
    threshold, decisions, kept, rejects = _books(values)
    rows = _returns(values)
    random.Random(0).shuffle(rows)
    _, episodes = task_statistics(TASK, threshold=threshold, returns=rows, decisions=decisions, kept=kept, rejects=rejects)
    assert episodes.column(out.EPISODE_ID).to_pylist() == [f"e{i}" for i in range(20)]
    assert episodes.column(out.EP_COLLECTION_INDEX).to_pylist() == list(range(20))


def test_a_task_whose_every_episode_was_rejected() -> None:
    rejects = [(f"e{i}", "s", "discrete_out_of_range", "action", "1024") for i in range(3)]
    record, episodes = task_statistics(TASK, threshold=None, returns=[], decisions=[], kept=[], rejects=rejects)
    assert record[out.ST_EPISODES_READ] == 3 and record[out.ST_REJECTED] == 3
    assert record[out.ST_WINDOW] is None and record[out.ST_EXPERT_RETURN] is None and record[out.ST_RETURN_MEDIAN] is None
    assert record[out.ST_HISTOGRAM_EDGES] == [] and record[out.ST_WINDOWED_MEAN] == []
    assert episodes.num_rows == 3


def test_the_same_reject_from_both_passes_counts_once() -> None:
    reject = ("e1", "s", "bad_shape", "observation/image", "3 vs 4")
    record, _ = task_statistics(TASK, threshold=None, returns=[], decisions=[], kept=[], rejects=[reject, reject])
    assert record[out.ST_REJECTED] == 1


def test_no_filter_keeps_everything_and_still_reports_the_threshold() -> None:
    values = [1.0, 5.0, 9.0]
    threshold = expert_return(values)
    decisions = [(f"e{i}", True, out.FILTER_NO_FILTER) for i in range(3)]
    kept = [(f"e{i}", v, 1, 2) for i, v in enumerate(values)]
    record, _ = task_statistics(
        TASK, threshold=threshold, returns=_returns(values), decisions=decisions, kept=kept, rejects=[],
        options=StatsOptions(no_filter=True),
    )
    assert record[out.ST_NO_FILTER] and record[out.ST_KEPT] == 3 and record[out.ST_THRESHOLD] == 7.2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d, k, r: k.pop(), "neither tokenized nor rejected"),
        (lambda d, k, r: r.append(("e0", "s", "x", None, "y")), "both as rejected and as dropped"),
        (lambda d, k, r: d.append(d[0]), "filtered twice"),
        (lambda d, k, r: k.append(k[0]), "tokenized twice"),
        (lambda d, k, r: k.append(("e0", 0.0, 1, 1)), "not kept by the filter"),
        (lambda d, k, r: d.pop(0), "never reached the filter"),
        (lambda d, k, r: d.append(("ghost", False, "r")), "no pass-1 return"),
    ],
)
def test_books_that_do_not_balance_are_an_error(mutate, message: str) -> None:
    values = [float(v) for v in range(10)]
    threshold, decisions, kept, rejects = _books(values)
    mutate(decisions, kept, rejects)
    with pytest.raises(ValueError, match=message):
        task_statistics(TASK, threshold=threshold, returns=_returns(values), decisions=decisions, kept=kept, rejects=rejects)


def test_a_tokenized_episode_rejected_by_sequencing_counts_as_rejected() -> None:
    values = [float(v) for v in range(10)]  # W = 1, E = 9, threshold 7.2: e8, e9 kept
    threshold, decisions, kept, rejects = _books(values)
    rejects.append(("e9", "shard-0", "timestep_too_long", None, "1100 > 1024 tokens"))
    record, episodes = task_statistics(
        TASK, threshold=threshold, returns=_returns(values), decisions=decisions, kept=kept, rejects=rejects
    )
    assert (record[out.ST_KEPT], record[out.ST_DROPPED], record[out.ST_REJECTED]) == (1, 8, 1)
    assert (record[out.ST_KEPT_TIMESTEPS], record[out.ST_KEPT_RETURN_MAX]) == (3, 8.0)
    assert episodes.to_pylist()[9][out.EP_DECISION] == out.DECISION_REJECTED


SEQUENCING_COLUMNS = (
    out.ST_SEQUENCES, out.ST_PROMPTED_SEQUENCES, out.ST_UNPROMPTED_SEQUENCES,
    out.ST_PROMPTS_UNAVAILABLE, out.ST_SEQUENCE_TOKENS,
)


def test_sequencing_columns_are_zero_without_counts() -> None:
    values = [float(v) for v in range(10)]
    threshold, decisions, kept, rejects = _books(values)
    record, _ = task_statistics(TASK, threshold=threshold, returns=_returns(values), decisions=decisions, kept=kept, rejects=rejects)
    assert [record[c] for c in SEQUENCING_COLUMNS] == [0, 0, 0, 0, 0]


def test_sequencing_counts_fill_the_columns() -> None:
    values = [float(v) for v in range(10)]  # e8, e9 kept; e9 rejected by sequencing
    threshold, decisions, kept, rejects = _books(values)
    rejects.append(("e9", "shard-0", TIMESTEP_TOO_LONG, None, "1100 > 1024 tokens"))
    counts = SequenceCounts(episodes=1, sequences=7, prompted=3, unprompted=4, prompts_unavailable=1, tokens=123)
    record, _ = task_statistics(
        TASK, threshold=threshold, returns=_returns(values), decisions=decisions, kept=kept, rejects=rejects,
        sequences=counts,
    )
    assert record[out.ST_KEPT] == 1
    assert [record[c] for c in SEQUENCING_COLUMNS] == [7, 3, 4, 1, 123]


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (SequenceCounts(episodes=1, sequences=2, prompted=1, unprompted=1, tokens=9), "sequencing counted 1 episode"),
        (SequenceCounts(episodes=3, sequences=2, prompted=1, unprompted=1, tokens=9), "sequencing counted 3 episode"),
        (SequenceCounts(), "sequencing counted 0 episode"),
        (SequenceCounts(episodes=2, sequences=3, prompted=1, unprompted=1, tokens=9), "1 prompted + 1 unprompted rows != 3 sequences"),
        (SequenceCounts(episodes=2, sequences=2, prompted=1, unprompted=1, prompts_unavailable=2, tokens=9), "2 rows without an available prompt"),
    ],
)
def test_sequence_counts_that_do_not_balance_are_an_error(counts: SequenceCounts, message: str) -> None:
    values = [float(v) for v in range(10)]  # e8, e9 kept and tokenized
    threshold, decisions, kept, rejects = _books(values)
    with pytest.raises(ValueError, match=f"task {re.escape(str(TASK))}: {re.escape(message)}"):
        task_statistics(
            TASK, threshold=threshold, returns=_returns(values), decisions=decisions, kept=kept, rejects=rejects,
            sequences=counts,
        )


def test_threshold_over_other_episodes_is_an_error() -> None:
    threshold, decisions, kept, rejects = _books([1.0, 2.0])
    with pytest.raises(ValueError, match="computed over 2 episodes"):
        task_statistics(TASK, threshold=threshold, returns=_returns([1.0]), decisions=decisions[:1], kept=[], rejects=[])


def test_curve_downsampling_keeps_the_expert_window() -> None:
    curve = np.arange(10_000, dtype=np.float64)
    picks = downsample_curve(curve, 500, 4321)
    assert len(picks) <= 501 and 4321 in picks and picks[0] == 0 and picks[-1] == 9999
    assert np.all(np.diff(picks) > 0)
    assert downsample_curve(curve[:7], 500, 3).tolist() == list(range(7))


def test_histogram_edges_of_a_single_value() -> None:
    assert histogram_edges(np.array([4.0, 4.0]), 4).tolist() == [3.5, 3.75, 4.0, 4.25, 4.5]


# --- files and the Beam stage ---


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


def test_beam_stage_writes_balanced_books(tmp_path: pathlib.Path) -> None:
    returns, decisions, kept, rejects, expected_kept = _synthetic_job_inputs()
    with TestPipeline(runner="BundleBasedDirectRunner") as pipeline:
        returns_pc = pipeline | "Returns" >> beam.Create(returns)
        inputs = {
            THRESHOLDS: returns_pc | ExpertThresholds(),
            RETURNS: returns_pc,
            DECISIONS: pipeline | "Decisions" >> beam.Create(decisions),
            KEPT: pipeline | "Kept" >> beam.Create(kept),
            REJECTS: pipeline | "Rejects" >> beam.Create(rejects),
        }
        paths = inputs | TaskStatistics(str(tmp_path))
        assert_that(
            paths,
            equal_to([{"parquet": out.STATS_PARQUET_FILE, "json": out.STATS_JSON_FILE,
                       "episodes": out.STATS_EPISODES_FILE, "report": out.REPORT_FILE}]),
        )
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


def _golden_results() -> list:
    values = [-21.0, -19.0, -20.0, -18.5, -15.0, -11.0, -12.0, -7.0, -9.5, -10.0, -6.0, -13.0, -8.0, -21.0, -4.0, -5.0, -9.0, -20.0, -6.5, -7.5, -8.0, -3.0]
    threshold, decisions, kept, rejects = _books(values, tokenize_reject={"e14"})
    rejects.append((None, "shard-7", "corrupt_record", None, "CRC mismatch"))
    # Pong keeps 2 episodes (30 tokens each); 3 of 6 rows carry an 8-token prompt.
    pong_counts = SequenceCounts(episodes=2, sequences=6, prompted=3, unprompted=3, prompts_unavailable=0, tokens=60 + 3 * 8)
    pong = task_statistics(TASK, threshold=threshold, returns=_returns(values), decisions=decisions, kept=kept, rejects=rejects,
                           sequences=pong_counts)
    walker_values = [0.25 * i * i for i in range(30)]
    threshold, decisions, kept, rejects = _books(walker_values)
    walker_counts = SequenceCounts(episodes=4, sequences=8, prompted=4, unprompted=4, prompts_unavailable=1, tokens=120 + 4 * 6)
    walker = task_statistics(("dmc", "walker_walk"), threshold=threshold, returns=_returns(walker_values), decisions=decisions, kept=kept, rejects=rejects,
                             sequences=walker_counts)
    return [walker, pong]


def test_stats_json_matches_golden_file(tmp_path: pathlib.Path) -> None:
    write_statistics(str(tmp_path), _golden_results())
    written = (tmp_path / out.STATS_JSON_FILE).read_text()
    golden = GOLDEN / "stats.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(written)
    assert written == golden.read_text()
    # Sorted by (dataset, task), whatever order the tasks arrived in.
    assert [t[out.TASK] for t in json.loads(written)[out.SJ_TASKS]] == [TASK[1], "walker_walk"]
    assert not (tmp_path / out.REPORT_FILE).exists()


def test_written_stats_are_readable_by_duckdb_and_polars(tmp_path: pathlib.Path) -> None:
    import duckdb
    import polars as pl

    write_statistics(str(tmp_path), _golden_results())
    path = str(tmp_path / out.STATS_PARQUET_FILE)
    kept = duckdb.sql(f"select task, kept from read_parquet('{path}') order by task").fetchall()
    # Pong: W = 2, E = mean(-4, -5) = -4.5, threshold -5.4: -4, -5, -3 pass, -4 rejected later.
    # Walker: W = 3, E = 0.25 * (27² + 28² + 29²) / 3 = 196.1667, threshold 156.93: i = 26..29.
    assert kept == [(TASK[1], 2), ("walker_walk", 4)]
    frame = pl.read_parquet(tmp_path / out.STATS_EPISODES_FILE)
    assert frame.height == 22 + 1 + 30
    assert math.isclose(frame.filter(pl.col(out.EPISODE_ID) == "e3")[out.EP_RETURN][0], -18.5)


def test_filter_and_statistics_compose_as_in_the_job(tmp_path: pathlib.Path) -> None:
    """RawEpisodes -> returns -> thresholds -> filter -> (a stand-in tokenizer) -> stats:
    the kept episodes are exactly those the spec's brute force keeps, minus tokenizer rejects."""
    from transforms.episode import RawEpisode
    from pipeline.filter_episodes import DECISIONS_TAG, FilterEpisodes

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
        filtered = raw | FilterEpisodes(beam.pvalue.AsDict(thresholds), return_fn=episode_return)
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


def test_an_output_without_tasks_still_has_valid_files(tmp_path: pathlib.Path) -> None:
    paths = write_statistics(str(tmp_path), [])
    assert set(paths.values()) == {out.STATS_PARQUET_FILE, out.STATS_JSON_FILE, out.STATS_EPISODES_FILE}
    assert write_report(str(tmp_path)) == out.REPORT_FILE and (tmp_path / out.REPORT_FILE).exists()
    assert pq.read_table(tmp_path / out.STATS_PARQUET_FILE).schema.equals(out.STATS_SCHEMA)
    assert pq.read_table(tmp_path / out.STATS_EPISODES_FILE).num_rows == 0
    assert read_stats_records(str(tmp_path)) == []


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
