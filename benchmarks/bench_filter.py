"""Time and peak memory of the expert-return filter on one task of many synthetic episodes.

    python benchmarks/bench_filter.py [--episodes 1000000] [--stats] [--beam 0]

Measures, for one task of N episode returns (Pong-like, integer returns that improve
over collection order, with ties in the order key):
1. the `ExpertThresholds` state: the stage's CombineFn fed one `EpisodeReturn` at a time
   from a generator (the input is never held), then sorting and W/E/threshold;
2. the filter's verdict on every episode (`decide`);
3. with --stats, the per-task statistics of the same task (`task_statistics`);
4. with --beam K, a real DirectRunner job of ExpertThresholds over K returns.
Peak memory is the process's peak RSS growth over the baseline after imports, and the
tracemalloc peak of the step (Python and numpy allocations) with --tracemalloc.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pipeline.filter_episodes import CollectReturns, _pair
from transforms.episode import EpisodeKey, EpisodeReturn
from transforms.expert_filter import decide

TASK = ("atari", "rlu_atari/Pong_run_1")


def synthetic_returns(n: int, *, seed: int = 0) -> Iterator[EpisodeReturn]:
    """Pong-like returns in collection order; every 50 episodes share a checkpoint id (order-key ties)."""
    rng = np.random.default_rng(seed)
    values = np.clip(np.round(np.linspace(-21, 18, n) + rng.normal(0, 4, n)), -21, 21)
    files = [f"gs://bucket/rlu_atari/Pong_run_1/shard-{s:05d}.tfrecord" for s in range(100)]
    for i in range(n):
        key = EpisodeKey(TASK[0], TASK[1], str(i), (i // 50,), files[i % 100], i // 100)
        yield EpisodeReturn(key, float(values[i]), 1000)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(name: str, step: Callable[[], Any], *, trace: bool) -> Any:
    gc.collect()
    before = peak_rss_mib()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    traced = ""
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced = f", tracemalloc peak {peak / 2**20:.1f} MiB"
    print(f"{name}: {seconds:.2f} s, peak RSS {peak_rss_mib():.0f} MiB (+{peak_rss_mib() - before:.0f}){traced}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1_000_000)
    parser.add_argument("--stats", action="store_true", help="also time task_statistics on the task")
    parser.add_argument("--beam", type=int, default=0, metavar="K", help="also run a DirectRunner job over K returns")
    parser.add_argument("--tracemalloc", action="store_true", help="report tracemalloc peaks (slower)")
    args = parser.parse_args()
    n = args.episodes
    print(f"one task of {n:,} episodes; baseline peak RSS {peak_rss_mib():.0f} MiB")

    def thresholds() -> Any:
        combine = CollectReturns()
        accumulator = combine.create_accumulator()
        for element in synthetic_returns(n):
            accumulator = combine.add_input(accumulator, _pair(element)[1])
        return combine.extract_output(accumulator).threshold(TASK, fraction=0.8, cap=1000)

    threshold = measure("ExpertThresholds (combine + sort + W/E)", thresholds, trace=args.tracemalloc)
    print(f"  N {threshold.n:,}, W {threshold.window}, E {threshold.expert_return:.4f}, "
          f"threshold {threshold.threshold:.4f}, window start {threshold.window_start:,}")

    def filter_all() -> int:
        return sum(decide(r.key, r.value, threshold, no_filter=False).kept for r in synthetic_returns(n))

    kept = measure("FilterEpisodes verdicts (decide per episode)", filter_all, trace=args.tracemalloc)
    print(f"  kept {kept:,} of {n:,}")

    if args.stats:
        from formats.stats_files import task_statistics

        def stats_inputs() -> tuple[list, list, list]:
            returns = [
                (r.key.sort_key(), r.key.episode_id, r.value, r.key.source_file) for r in synthetic_returns(n)
            ]
            decisions = [(r.key.episode_id, threshold.keeps(r.value), "r") for r in synthetic_returns(n)]
            kept_rows = [(r.key.episode_id, r.value, 999, 99_900) for r in synthetic_returns(n) if threshold.keeps(r.value)]
            return returns, decisions, kept_rows

        returns, decisions, kept_rows = measure("TaskStatistics inputs (the grouped per-episode tuples)", stats_inputs, trace=False)

        def stats() -> Any:
            return task_statistics(TASK, threshold=threshold, returns=returns, decisions=decisions,
                                   kept=kept_rows, rejects=[])

        record, _ = measure("TaskStatistics of the task (record + per-episode table)", stats, trace=args.tracemalloc)
        print(f"  read {record['episodes_read']:,} = kept {record['kept']:,} + dropped {record['dropped']:,}")

    if args.beam:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions

        from pipeline.filter_episodes import ExpertThresholds

        def beam_job() -> None:
            with beam.Pipeline(runner="DirectRunner", options=PipelineOptions([])) as pipeline:
                _ = (
                    pipeline
                    | beam.Create(list(synthetic_returns(args.beam)))
                    | ExpertThresholds()
                    | beam.Map(lambda kv: print(f"  beam: {kv[0]} W {kv[1].window} E {kv[1].expert_return:.4f}"))
                )

        measure(f"DirectRunner ExpertThresholds over {args.beam:,} returns", beam_job, trace=False)


if __name__ == "__main__":
    main()
