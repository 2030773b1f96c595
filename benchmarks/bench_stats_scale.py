"""Peak memory and time of the job's per-task and gathering stages on one task of 1,000,000
short episodes (issue 14, item 4).

    python benchmarks/bench_stats_scale.py                    # 1,000,000 episodes
    python benchmarks/bench_stats_scale.py --episodes 3000    # a smoke run, figures meaningless

What it measures: the stages that hold one task's per-episode figures or gather the
output's entries, wired as `pipeline/passes.py` wires them, on Beam's in-process runner
(`pipeline.runner.make_pipeline(["--runner=DirectRunner"])`, one process):
ExpertThresholds ("ExpertReturn"), TaskStatistics ("Stats": the books, stats.json and
stats.parquet, episodes.parquet, report.html), WriteRejects and FinalizeRejects,
FinalizeShards of the sequences shards, and the manifest (built, verified and published
from a staging directory under a claim, as `run_job` does).

What it does not measure: reading, validating, tokenizing, sequencing and writing a million
real episodes (hours on this machine; `bench_pipeline.py` measures the whole job on
smaller data). Those stages are replaced by the elements they emit, made inside the
pipeline from chunk numbers (nothing is held in the pipeline's definition): per episode
an `EpisodeReturn`, a `FilterDecision` (the real filter's `decide` against the computed
threshold), a `KeptEpisode` and a `(TaskKey, SequenceCounts)` when kept, or a `Reject`
(0.5% rejected before pass 1, 0.5% of the kept ones by tokenization, plus an unreadable
record per 100,000); and one sequences shard per input file (1,000 episodes), a small
placeholder file written through `formats.files.HashingWriter` with its `ShardEntry`, as
WriteShards emits it.

Prints the task's figures (read = kept + dropped + rejected, N, W, E), the output (shards,
episodes.parquet), the elapsed time (pipeline construction and run; imports and start-up
before the clock) and the peak RSS of the run's process tree (polled every 50 ms with
psutil, `bench_pipeline.poll_peak_rss`; and the kernel's maxrss), against the 1.5 GiB target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: `benchmarks` is not an installed package
    sys.path.insert(0, str(_ROOT))

RESULT_PREFIX = "BENCH_RESULT "
TARGET_PEAK_BYTES = 3 << 29  # 1.5 GiB
TASK = ("atari", "rlu_atari/Pong_run_1")
EPISODES_PER_FILE = 1000  # one input file (work item) and one sequences shard per 1,000 episodes
CHUNK = 10_000  # episodes made per element of the synthetic source
TIMESTEPS, TOKENS_PER_TIMESTEP = 20, 38  # short Atari-like episodes: 760 tokens, one 1024-token row


# --- The synthetic elements (in the child process) ---------------------------------------


def _source_file(i: int) -> str:
    return f"gs://bucket/rlu_atari/Pong_run_1/1.3.0/rlu_atari-train.tfrecord-{i // EPISODES_PER_FILE:05d}"


def _key(i: int) -> Any:
    from transforms.episode import EpisodeKey

    item = i // EPISODES_PER_FILE
    return EpisodeKey(TASK[0], TASK[1], f"{i // 50}/{i}", (i // 50, i), _source_file(i), i % EPISODES_PER_FILE, item)


def _return_of(i: int, n: int) -> float:
    """Pong-like: integer returns that improve over the first half of collection order and
    then plateau, with noise (deterministic), so the filter keeps about 40% of the episodes."""
    noise = (i * 2654435761 % 9) - 4
    return float(max(-21, min(21, round(-21 + 39 * min(1.0, 2 * i / n)) + noise)))


def _rejected_before_pass_1(i: int) -> bool:
    return i % 200 == 7  # an RLDS violation: no return, a reject only


def _rejected_by_tokenizing(i: int) -> bool:
    return i % 200 == 107


def _episodes(chunk: int, n: int) -> range:
    return range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK))


def returns_of(chunk: int, n: int) -> Iterator[Any]:
    from transforms.episode import EpisodeReturn

    for i in _episodes(chunk, n):
        if not _rejected_before_pass_1(i):
            yield EpisodeReturn(_key(i), _return_of(i, n), TIMESTEPS)


def decisions_of(chunk: int, n: int, thresholds: dict) -> Iterator[Any]:
    from transforms.expert_filter import decide

    for i in _episodes(chunk, n):
        if not _rejected_before_pass_1(i):
            yield decide(_key(i), _return_of(i, n), thresholds[TASK], no_filter=False)


def kept_and_rejects_of(chunk: int, n: int, thresholds: dict) -> Iterator[Any]:
    """Tagged outputs: KeptEpisode, (TaskKey, SequenceCounts), Reject."""
    import apache_beam as beam

    from transforms.books import SequenceCounts
    from transforms.episode import KeptEpisode, Reject

    for i in _episodes(chunk, n):
        key = _key(i)
        if i % 100_000 == 99_999:
            yield beam.pvalue.TaggedOutput("rejects", Reject(TASK[0], TASK[1], None, key.source_file,
                                                            "corrupt_record", None, f"record {i}: bad CRC"))
        if _rejected_before_pass_1(i):
            yield beam.pvalue.TaggedOutput("rejects", Reject.of_episode(
                key, reason="rlds_is_last", field=None, detail="is_last is not on the last step"))
        elif thresholds[TASK].keeps(_return_of(i, n)):
            if _rejected_by_tokenizing(i):
                yield beam.pvalue.TaggedOutput("rejects", Reject.of_episode(
                    key, reason="non_finite", field="observation", detail=f"NaN at timestep {i % TIMESTEPS}"))
                continue
            tokens = TIMESTEPS * TOKENS_PER_TIMESTEP
            yield KeptEpisode(key, _return_of(i, n), TIMESTEPS, tokens)
            prompted = int(i % 4 == 0)  # a quarter of the rows carry a prompt
            counts = SequenceCounts(1, 1, prompted, 1 - prompted, 0, tokens + 200 * prompted)
            yield beam.pvalue.TaggedOutput("counts", (TASK, counts))


def shards_of(chunk: int, n: int, output_dir: str) -> Iterator[Any]:
    """One placeholder sequences shard per input file, as WriteShards would leave it."""
    import fsspec

    from formats.files import HashingWriter
    from formats.parquet_shards import ShardEntry, shard_path
    from formats.paths import path_under
    from schemas.output import SEQUENCES_DIR, TMP_DIR

    files = sorted({i // EPISODES_PER_FILE for i in _episodes(chunk, n)})
    for item in files:
        path = shard_path(SEQUENCES_DIR, TASK[0], TASK[1], item, 0)
        temp = path_under(output_dir, TMP_DIR, SEQUENCES_DIR, f"{chunk:032x}", *path.split("/"))
        fs, local = fsspec.core.url_to_fs(temp)
        fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
        rows = min(n, (item + 1) * EPISODES_PER_FILE) - item * EPISODES_PER_FILE
        with fs.open(local, "wb") as raw:
            writer = HashingWriter(raw)
            writer.write(f"placeholder of {rows} rows of work item {item}\n".encode() * 64)
        yield ShardEntry(SEQUENCES_DIR, path, temp, TASK[0], TASK[1], rows, rows * TIMESTEPS * TOKENS_PER_TIMESTEP,
                         writer.size, writer.sha256)


# --- The measured run (child process) -----------------------------------------------------


def _write_manifest(_: None, *, shards: Any, rejects: Any, stats: Any, output_dir: str) -> str:
    from formats.manifest import build_manifest, write_manifest
    from schemas.vocab import GATO

    manifest = build_manifest(
        config={"dataset": TASK[0], "benchmark": "bench_stats_scale"}, layout=GATO, fields={},
        sequence_length=1024, shards=shards, rejects=rejects, stats=stats, dataset_weights={TASK[0]: None},
    )
    return write_manifest(output_dir, manifest)


def build(root: Any, *, episodes: int, output_dir: str) -> None:
    """The measured stages, wired as `pipeline/passes.py` wires them."""
    import apache_beam as beam

    from formats.parquet_shards import WriteOptions
    from pipeline import task_statistics as stats_stage
    from pipeline.filter_episodes import ExpertThresholds
    from pipeline.write_shards import FinalizeShards, WriteRejects
    from schemas.output import REJECTS_DIR, SEQUENCES_DIR

    chunks = root | "Chunks" >> beam.Create(list(range(-(-episodes // CHUNK))))
    returns = chunks | "Returns" >> beam.FlatMap(returns_of, episodes).with_output_types(Any)
    thresholds = returns | "ExpertReturn" >> ExpertThresholds()
    as_dict = beam.pvalue.AsDict(thresholds)
    decisions = chunks | "Decisions" >> beam.FlatMap(decisions_of, episodes, as_dict).with_output_types(Any)
    later = chunks | "KeptAndRejects" >> beam.FlatMap(kept_and_rejects_of, episodes, as_dict).with_outputs(
        "rejects", "counts", main="kept")
    shards = (
        chunks
        | "WriteShards" >> beam.FlatMap(shards_of, episodes, output_dir).with_output_types(Any)
        | "FinalizeShards" >> FinalizeShards(output_dir, kind=SEQUENCES_DIR)
    )
    reject_shards = (
        later.rejects
        | "WriteRejects" >> WriteRejects(WriteOptions(output_dir=output_dir))
        | "FinalizeRejects" >> FinalizeShards(output_dir, kind=REJECTS_DIR)
    )
    stats = {
        stats_stage.THRESHOLDS: thresholds, stats_stage.RETURNS: returns, stats_stage.DECISIONS: decisions,
        stats_stage.KEPT: later.kept, stats_stage.REJECTS: later.rejects, stats_stage.SEQUENCE_COUNTS: later.counts,
    } | "Stats" >> stats_stage.TaskStatistics(output_dir)
    _ = (
        root
        | "ManifestTrigger" >> beam.Create([None])
        | "Manifest" >> beam.Map(
            _write_manifest, output_dir=output_dir, shards=beam.pvalue.AsSingleton(shards),
            rejects=beam.pvalue.AsSingleton(reject_shards), stats=beam.pvalue.AsSingleton(stats),
        )
    )


def _child(spec: dict[str, Any]) -> None:
    import psutil

    import apache_beam  # noqa: F401  (imports are start-up, not the run)

    from formats.claim import release_claim, take_claim
    from formats.output_dir import prepare_output_dir
    from pipeline.runner import make_pipeline

    baseline = psutil.Process().memory_info().rss
    output_dir = spec["output_dir"]
    started = time.perf_counter()
    claim = take_claim(output_dir)  # as run_job: a claim, a staging directory, published at the end
    try:
        stage = prepare_output_dir(output_dir, overwrite=True, run_id=claim.run_id)
        root = make_pipeline(["--runner=DirectRunner"])
        build(root, episodes=spec["episodes"], output_dir=stage)
        root.run().wait_until_finish()
    finally:
        release_claim(output_dir, claim.run_id)
    seconds = time.perf_counter() - started
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(RESULT_PREFIX + json.dumps({"seconds": seconds, "baseline": baseline, "maxrss": maxrss}), flush=True)


# --- The report (parent process) ----------------------------------------------------------


def measure(episodes: int, output_dir: Path) -> dict[str, Any]:
    """Runs the stages in a child process, polling its process tree's RSS."""
    from benchmarks.bench_pipeline import poll_peak_rss

    spec = {"episodes": episodes, "output_dir": str(output_dir)}
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen([sys.executable, __file__, "--_child", json.dumps(spec)],
                                 stdout=subprocess.PIPE, stderr=log, text=True)
        peak = poll_peak_rss(child)
        stdout = child.stdout.read() if child.stdout else ""
        child.wait()
        log.seek(0)
        errors = log.read()
    results = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if child.returncode != 0 or not results:
        raise RuntimeError(f"the run failed (exit {child.returncode}): {errors[-3000:]}")
    return {**json.loads(results[-1][len(RESULT_PREFIX):]), "peak": peak}


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report(episodes: int, output_dir: Path, run: dict[str, Any]) -> list[str]:
    """The figures of a finished run, one line each."""
    import pyarrow.parquet as pq

    from formats.manifest import read_manifest
    from formats.stats_files import read_stats_records
    from schemas import output as out

    (record,) = read_stats_records(str(output_dir))
    manifest = read_manifest(str(output_dir))
    episodes_file = pq.ParquetFile(output_dir / out.STATS_EPISODES_FILE)
    peak = max(run["peak"], run["maxrss"])
    return [
        f"one task of {episodes:,} episodes: {record[out.ST_EPISODES_WITH_RETURN]:,} with a return; "
        f"W {record[out.ST_WINDOW]}, E {record[out.ST_EXPERT_RETURN]:.3f}, threshold {record[out.ST_THRESHOLD]:.3f}",
        f"  read {record[out.ST_EPISODES_READ]:,} = kept {record[out.ST_KEPT]:,} + dropped {record[out.ST_DROPPED]:,} "
        f"+ rejected {record[out.ST_REJECTED]:,}",
        f"  output: {len(manifest[out.M_SHARDS]):,} sequences shards, {len(manifest[out.M_REJECTS]):,} rejects shards, "
        f"episodes.parquet {episodes_file.metadata.num_rows:,} rows in {episodes_file.metadata.num_row_groups} "
        f"row groups, {(output_dir / out.STATS_EPISODES_FILE).stat().st_size:,} bytes",
        f"  time {run['seconds']:.1f} s (pipeline construction and run; imports before the clock)",
        f"  peak RSS {_mib(run['peak'])} (process tree, polled), maxrss {_mib(run['maxrss'])}; "
        f"{_mib(run['baseline'])} of it Python, Beam and our modules before the run",
        f"  peak RSS against the target: {_mib(peak)} <= {_mib(TARGET_PEAK_BYTES)} (1.5 GiB) "
        f"{'OK' if peak <= TARGET_PEAK_BYTES else 'MISSED'}",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=1_000_000, help="episodes of the one task")
    p.add_argument("--output_dir", default="", help="where the run writes (default: a temporary directory)")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        _child(json.loads(args._child))
        return 0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load}; DirectRunner in one process; "
          f"python {sys.version.split()[0]}", flush=True)
    work = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="bench_stats_scale-"))
    try:
        output_dir = work / "out"
        run = measure(args.episodes, output_dir)
        for line in report(args.episodes, output_dir, run):
            print(line, flush=True)
    finally:
        if not args.output_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
