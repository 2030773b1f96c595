"""End-to-end cost of the job per timestep against its floor (issues 7 and 16).

    python benchmarks/bench_pipeline.py                 # the suite (< 10 min on 2 cores)
    python benchmarks/bench_pipeline.py --quick         # tiny sizes, a smoke run
    python benchmarks/bench_pipeline.py --compare_tree /tmp/old   # also the old job, same run

Makes synthetic inputs in the real TFDS formats (`benchmarks/synthetic.py`, cached under
--cache_dir) and measures, for each kind (Atari-like, control-suite-like, BabyAI-like),
each run in its own process on the same DirectRunner settings:

- the full job (`pipeline.job.run_job`: read twice, validate, filter, tokenize,
  sequence, write, stats, manifest) at two sizes 8x apart and on one episode;
- fixed cost: the one-episode run; marginal cost per timestep: the slope between the
  two sizes ((T_large - T_small) / (timesteps_large - timesteps_small));
- the floor, on the large size's records, per timestep: the raw read with both CRC
  checks (`formats.tfrecord.iter_records`), the fastest pixel-identical decode of every
  PNG frame available (pyspng, else Pillow), and a Parquet write of the job's own
  output tables with the job's writer (`formats.parquet_shards.ShardWriter`, default
  `WriteOptions`). Nothing the job could skip is in it.

One line per kind: `<kind>: marginal full/floor <x>x, full <a> us/ts, floor <b> us/ts,
fixed <c> s`, then its details. `--compare_tree DIR` runs the full job of another source
tree (e.g. `git archive <old commit>`) on the large Atari-like size in the same run, for
a before/after figure. `--scaling` adds the 4x-data and 2-worker checks of issue 7.
Each measurement runs `--repeat` times (default 2) and the fastest counts, since other
work on a shared machine only slows runs down.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: `benchmarks` is not an installed package
    sys.path.insert(0, str(_ROOT))

from benchmarks.synthetic import SyntheticSet, make_dataset  # noqa: E402
from benchmarks.timing import best_seconds  # noqa: E402

RESULT_PREFIX = "BENCH_RESULT "
POLL_SECONDS = 0.05
_PNG_MAGIC = b"\x89PNG"

# Targets (ratios within one run): issue 16 (marginal cost; 2 workers >= 1.7x, up from
# issue 7's 1.6x), issue 7 (the other scaling checks, --scaling).
TARGET_MARGINAL_OVER_FLOOR = 2.0
TARGET_TIME_4X = 4.4
TARGET_MEMORY_4X = 1.2
TARGET_TWO_WORKERS = 1.7
TARGET_FULL_OVER_BASELINE = 0.5
WORKERS_SCALE = 8  # the data of the 2-worker comparison, as a multiple of the large size
SMALL_DIVISOR = 8  # the small size has 1/8 of the large size's episodes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Episodes x RLDS steps of each kind at the large size, and episodes per input shard."""

    atari: tuple[int, int]
    control_suite: tuple[int, int]
    babyai: tuple[int, int]
    episodes_per_shard: int


# Control-suite-like and BabyAI-like jobs are cheap per timestep: their large sizes are
# 128 and 256 episodes, so the slope is not lost in the ~1 s fixed cost's noise.
FULL_SIZES = Sizes(atari=(64, 1000), control_suite=(128, 1001), babyai=(256, 200), episodes_per_shard=2)
QUICK_SIZES = Sizes(atari=(8, 40), control_suite=(8, 40), babyai=(8, 20), episodes_per_shard=1)


# --- One measured run (in a child process) ------------------------------------------------


def _decode_images(steps: Any) -> int:
    """Decodes every PNG leaf of an episode's steps, as the tokenizer would; returns frames."""
    from transforms.images import decode_pngs

    frames = 0
    for value in steps.values():
        if isinstance(value, dict):
            frames += _decode_images(value)
        elif value.dtype == object and len(value) and bytes(value[0][:4]) == _PNG_MAGIC:
            frames += len(decode_pngs(value))
    return frames


def _baseline_steps(raw: Any) -> int:
    from transforms.steps import num_emitted_steps

    _decode_images(raw.steps)
    return num_emitted_steps(raw)


def run_baseline(data: SyntheticSet, beam_args: Sequence[str]) -> dict[str, Any]:
    """Reader + PNG decode of every frame through Beam; returns the timesteps it read."""
    import apache_beam as beam

    from pipeline.read_episodes import ReadEpisodes
    from pipeline.runner import make_pipeline
    from planning.plan import plan_work

    plan = plan_work(data.kind, data_dir=data.data_dir)
    root = make_pipeline(beam_args)  # the runner run_job uses for the same flags
    items = root | "WorkItems" >> beam.Create(plan.work_items, reshuffle=False)  # as run_job
    read = items | "Read" >> ReadEpisodes(plan.dataset)
    counter = beam.metrics.Metrics.counter("bench", "timesteps")
    _ = read.episodes | "DecodeImages" >> beam.Map(lambda raw: counter.inc(_baseline_steps(raw)))
    result = root.run()
    result.wait_until_finish()
    [timesteps] = [c.committed for c in result.metrics().query()["counters"] if c.key.metric.name == "timesteps"]
    return {"timesteps": int(timesteps)}


def run_full(data: SyntheticSet, beam_args: Sequence[str], output_dir: str) -> dict[str, Any]:
    """The whole job via `run_job`; returns timesteps read, tokens, and output bytes."""
    from pipeline.job import run_job
    from planning.options import JobOptions
    from schemas import output as out

    options = JobOptions(
        dataset=data.kind, output_dir=output_dir, data_dir=data.data_dir,
        sentencepiece_model=data.sentencepiece_model, overwrite=True,
    )
    summary = run_job(options, beam_args=beam_args)
    manifest = json.loads((Path(output_dir) / out.MANIFEST_FILE).read_text())
    shards = manifest[out.M_SHARDS]
    return {
        "episode_tokens": sum(v.get("tokenize.tokens", 0) for v in summary.values()),
        "written_tokens": sum(s[out.S_TOKENS] for s in shards),
        "rows": sum(s[out.S_ROWS] for s in shards),
        "output_bytes": sum((Path(output_dir) / s[out.S_PATH]).stat().st_size for s in shards),
        "kept_episodes": sum(v.get("tokenize.episodes", 0) for v in summary.values()),
    }


def _shard_files(data: SyntheticSet) -> list[str]:
    from planning.plan import plan_work

    return sorted({item.shard_path for item in plan_work(data.kind, data_dir=data.data_dir).work_items})


def run_floor(data: SyntheticSet, job_output: str) -> dict[str, Any]:
    """The floor's parts on the records of `data`, each timed alone (fastest of 3).

    read: TFRecord framing with both crc32c checks, every record of every shard;
    decode: every PNG frame with the fastest pixel-identical decoder (pyspng, else Pillow);
    write: the job's own output tables (`job_output`'s sequence shards) written again
    with `ShardWriter` and default `WriteOptions` (zstd 3, 128-row groups, dictionaries).
    Also `parse`, not one of the issue's parts: every record through the job's own decoder
    once (protobuf, packed lists, encoded tensors), printed as a second floor beside it.
    """
    import tempfile

    import pyarrow.parquet as pq

    from formats.parquet_shards import ShardWriter, WriteOptions
    from formats.tf_example import ExampleDecoder, raw_features
    from formats.tfds_info import read_features
    from formats.tfrecord import iter_records
    from tensorflow_datasets.proto import tf_example_pb2
    from transforms.png_decode import decode_png_pillow, spng_decoder, spng_format

    files = _shard_files(data)

    def read() -> list[bytes]:
        records: list[bytes] = []
        for path in files:
            with open(path, "rb") as f:
                records += iter_records(f)
        return records

    records = read()
    pngs = [v for record in records for feature in tf_example_pb2.Example.FromString(record).features.feature.values()
            for v in feature.bytes_list.value if v[:4] == _PNG_MAGIC]
    # Not the floor: the job's own decoder over every record once (protobuf, packed
    # lists, zlib/bytes tensors; frames stay PNG bytes), which any job must pay at least once.
    decoder = ExampleDecoder(raw_features(read_features(str(Path(files[0]).parent))))  # as ShardReader makes it
    spng = spng_decoder()  # pyspng's C decode, as the job calls it
    # Each frame's format is known before the clock starts: the floor decodes, nothing more.
    formats = [spng_format(b) if spng is not None else None for b in pngs]

    def decode() -> None:
        for b, fmt in zip(pngs, formats):
            spng(b, fmt) if fmt is not None else decode_png_pillow(b, 0)  # type: ignore[misc]
    tables = [pq.read_table(p) for p in sorted(Path(job_output, "sequences").rglob("*.parquet"))]

    def write() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for i, table in enumerate(tables):
                writer = ShardWriter(kind="sequences", dataset=data.kind, task="floor", work_item=i,
                                     schema=table.schema, options=WriteOptions(output_dir=tmp), attempt="floor")
                for batch in table.to_batches(max_chunksize=20):  # about one episode's rows at a time
                    writer.write(batch)
                writer.close()

    return {
        "read": best_seconds(read),
        "parse": best_seconds(lambda: [decoder(record) for record in records]),
        "decode": best_seconds(decode) if pngs else 0.0,
        "write": best_seconds(write),
        "frames": len(pngs),
        "decoder": "none" if not pngs else "pyspng" if spng is not None else "Pillow",
    }


def _child(spec: dict[str, Any]) -> None:
    # Imports are not the job's time: import what the run uses here, once, as a
    # long-running worker would have (the reader no longer imports TensorFlow).
    import tensorflow_datasets  # noqa: F401

    import pipeline.job  # noqa: F401

    data = SyntheticSet(**spec["data"])
    started = time.perf_counter()
    if spec["mode"] == "baseline":
        result = run_baseline(data, spec["beam_args"])
    elif spec["mode"] == "floor":
        result = run_floor(data, spec["output_dir"])
    else:
        result = run_full(data, spec["beam_args"], spec["output_dir"])
    result["seconds"] = time.perf_counter() - started
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# --- The suite (parent process) -----------------------------------------------------------


def tree_rss(process: Any) -> int:
    """RSS of `process` (a psutil.Process) and all its descendants."""
    import psutil

    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def poll_peak_rss(child: subprocess.Popen) -> int:
    """The highest `tree_rss` of `child`, polled every POLL_SECONDS until it exits."""
    import psutil

    process, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(process))
        except psutil.NoSuchProcess:
            break
        time.sleep(POLL_SECONDS)
    return peak


def measure(
    mode: str, data: SyntheticSet, *, workers: int, work_dir: Path, label: str,
    running_mode: str = "in_memory", script: Path | None = None, keep_output: bool = False,
    output_dir: Path | None = None,
) -> dict[str, Any]:
    """Runs one configuration in a child process (`script`'s, by default this file's),
    polling its process tree's RSS. The run's output is removed unless `keep_output`."""
    script = script or Path(__file__)
    spec = {
        "mode": mode,
        "data": dataclasses.asdict(data),
        "beam_args": ["--runner=DirectRunner", f"--direct_num_workers={workers}",
                      f"--direct_running_mode={running_mode}"],
        "output_dir": str(output_dir or work_dir / label),
    }
    log_path = work_dir / f"{label}.log"
    env = {**os.environ, "PYTHONPATH": str(script.resolve().parent.parent)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [sys.executable, str(script), "--_child", json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=script.resolve().parent.parent,
        )
        peak = poll_peak_rss(child)
        stdout = child.stdout.read() if child.stdout else ""
        child.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    results = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if child.returncode != 0 or not results:
        raise RuntimeError(f"{label} failed (exit {child.returncode}); its log: {log_path}")
    result = json.loads(results[-1][len(RESULT_PREFIX):])
    result["peak_rss"] = peak
    # CPU of the child and every worker process it reaped (the whole run, start-up included).
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not keep_output and mode != "floor":
        shutil.rmtree(spec["output_dir"], ignore_errors=True)
    return result


def measure_interleaved(
    runs: Sequence[tuple[SyntheticSet, dict[str, Any]]], *, repeat: int, **kwargs: Any
) -> list[dict[str, Any]]:
    """The full job on each (data, measure options) of `runs`, round after round, `repeat`
    rounds: each run's fastest (and its highest peak memory).

    One size after another in every round, so a slow spell of a shared machine slows
    every size alike instead of all the runs of one size (the slope between sizes is
    what counts).
    """
    results: list[list[dict[str, Any]]] = [[] for _ in runs]
    for _ in range(repeat):
        for i, (data, options) in enumerate(runs):
            results[i].append(measure("full", data, **kwargs, **options))
    return [_fastest(rs) for rs in results]


def _fastest(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run's figures (its cpu_seconds too), with the highest peak memory of all.

    Other work on a shared machine only ever slows a run down, so the fastest of a few
    is the closest to the job's own cost; memory is taken at its worst.
    """
    return {**min(runs, key=lambda r: r["seconds"]), "peak_rss": max(r["peak_rss"] for r in runs)}


def measure_best(mode: str, data: SyntheticSet, *, repeat: int, **kwargs: Any) -> dict[str, Any]:
    """`measure` `repeat` times: `_fastest` of the runs."""
    return _fastest([measure(mode, data, **kwargs) for _ in range(repeat)])


def _rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _check(name: str, value: float, target: float, *, at_most: bool = False) -> str:
    ok = value <= target if at_most else value >= target
    return f"{name}: {value:.2f}x (target {'<=' if at_most else '>='} {target}x) {'OK' if ok else 'MISSED'}"


def _us(seconds: float, timesteps: int) -> float:
    return seconds / max(1, timesteps) * 1e6


def run_suite(
    cache_dir: Path, sizes: Sizes, *, kinds: Sequence[str], scaling: bool, repeat: int = 2,
    compare_tree: Path | None = None,
) -> list[str]:
    """Makes the data, runs every measurement, prints and returns the report lines."""
    work_dir = cache_dir / "runs"
    work_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    def dataset(kind: str, scale: int = 1, *, episodes: int | None = None) -> SyntheticSet:
        large, steps = getattr(sizes, kind)
        return make_dataset(kind, cache_dir=cache_dir / "data", episodes=episodes or large * scale, steps=steps,
                            episodes_per_shard=sizes.episodes_per_shard)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    say(f"machine: {os.cpu_count()} cores, load average {load} before the runs; DirectRunner; "
        f"python {sys.version.split()[0]}")
    full_runs: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        large_data = dataset(kind)
        small_data = dataset(kind, episodes=max(1, large_data.episodes // SMALL_DIVISOR))
        one_data = dataset(kind, episodes=1)
        sized = [(one_data, {"label": f"{kind}-e1-full"})]
        if small_data != one_data:
            sized.append((small_data, {"label": f"{kind}-small-full"}))
        sized.append((large_data, {"label": f"{kind}-large-full", "keep_output": True}))
        measured = measure_interleaved(sized, repeat=repeat, workers=1, work_dir=work_dir)
        one, small, large = measured[0], measured[-2], measured[-1]
        full_runs[kind] = large
        floor = measure("floor", large_data, workers=1, work_dir=work_dir, label=f"{kind}-floor",
                        output_dir=work_dir / f"{kind}-large-full")
        shutil.rmtree(work_dir / f"{kind}-large-full", ignore_errors=True)
        span = large_data.timesteps - small_data.timesteps
        marginal = _us(large["seconds"] - small["seconds"], span)
        floor_us = _us(floor["read"] + floor["decode"] + floor["write"], large_data.timesteps)
        say(f"{kind}: marginal full/floor {marginal / floor_us:.1f}x, full {marginal:.1f} us/ts, "
            f"floor {floor_us:.1f} us/ts, fixed {one['seconds']:.1f} s")
        say(f"  full job: 1 episode {one['seconds']:.2f} s; {small_data.episodes} x {small_data.steps} steps "
            f"({small_data.timesteps:,} ts) {small['seconds']:.2f} s; {large_data.episodes} x {large_data.steps} "
            f"({large_data.timesteps:,} ts) {large['seconds']:.2f} s = {_rate(large_data.timesteps, large['seconds'])} "
            f"timesteps/s, peak {_mib(large['peak_rss'])}")
        say(f"  floor per timestep: read {_us(floor['read'], large_data.timesteps):.2f} us, decode "
            f"{_us(floor['decode'], large_data.timesteps):.2f} us ({floor['frames']:,} frames, {floor['decoder']}), "
            f"write {_us(floor['write'], large_data.timesteps):.2f} us")
        # Beside the floor, for the decision it leaves open: one decode of the
        # stored records (protobuf and tensors) counted, as the PNG decode is.
        parsed_us = floor_us + _us(floor["parse"], large_data.timesteps)
        say(f"  with one decode of the stored records ({_us(floor['parse'], large_data.timesteps):.2f} us, the job's "
            f"decoder): floor {parsed_us:.1f} us/ts, marginal full/that {marginal / parsed_us:.1f}x")
        say(f"  output: {large['output_bytes'] / max(1, large['written_tokens']):.3f} bytes/token "
            f"({large['written_tokens']:,} tokens in {large['rows']:,} rows, kept {large['kept_episodes']}/"
            f"{large_data.episodes} episodes)")
        say("  " + _check("marginal full/floor", marginal / floor_us, TARGET_MARGINAL_OVER_FLOOR, at_most=True))
        if compare_tree is not None and kind == "atari":
            old = measure_best("full", large_data, repeat=repeat, workers=1, work_dir=work_dir,
                               label="atari-large-full-compare", script=compare_tree / "benchmarks" / "bench_pipeline.py")
            say(f"  same data, {compare_tree}: {old['seconds']:.2f} s = {_rate(large_data.timesteps, old['seconds'])} "
                f"timesteps/s; this tree {large['seconds']:.2f} s: {old['seconds'] / large['seconds']:.2f}x faster")

    if scaling:
        one = full_runs["atari"]
        four_data = dataset("atari", 4)
        four = measure_best("full", four_data, repeat=repeat, workers=1, work_dir=work_dir, label="atari-x4-full")
        four_base = measure_best("baseline", four_data, repeat=repeat, workers=1, work_dir=work_dir,
                                 label="atari-x4-baseline")
        # Workers against one worker in the same mode (both pay the worker processes'
        # start-up), on 8x the data so that start-up is not most of the time.
        mp = "multi_processing"
        eight_data = dataset("atari", WORKERS_SCALE)
        one_mp = measure_best("full", eight_data, repeat=repeat, workers=1, work_dir=work_dir,
                              label="atari-x8-full-1mp", running_mode=mp)
        two = measure_best("full", eight_data, repeat=repeat, workers=2, work_dir=work_dir,
                           label="atari-x8-full-2mp", running_mode=mp)
        say(f"scaling (atari, full job, in_memory): 1x {one['seconds']:.1f} s peak {_mib(one['peak_rss'])}; "
            f"4x {four['seconds']:.1f} s peak {_mib(four['peak_rss'])}")
        say("  " + _check("4x data time", four["seconds"] / one["seconds"], TARGET_TIME_4X, at_most=True))
        say("  " + _check("4x data peak memory", four["peak_rss"] / one["peak_rss"], TARGET_MEMORY_4X, at_most=True))
        say(f"  4x baseline {four_base['seconds']:.1f} s ({_rate(four_data.timesteps, four_base['seconds'])} "
            f"timesteps/s) vs full {four['seconds']:.1f} s ({_rate(four_data.timesteps, four['seconds'])} timesteps/s)")
        say("  " + _check("full/baseline speed at 4x", four_base["seconds"] / four["seconds"], TARGET_FULL_OVER_BASELINE))
        say(f"workers (atari {WORKERS_SCALE}x = {eight_data.timesteps:,} timesteps, full job, {mp}): "
            f"1 worker {one_mp['seconds']:.1f} s peak {_mib(one_mp['peak_rss'])}; "
            f"2 workers {two['seconds']:.1f} s peak {_mib(two['peak_rss'])}")
        say(f"  CPU seconds of the process tree: 1 worker {one_mp['cpu_seconds']:.1f}, "
            f"2 workers {two['cpu_seconds']:.1f} (at most {os.cpu_count()} cores, shared with other work)")
        say("  " + _check("2 workers speed-up", one_mp["seconds"] / two["seconds"], TARGET_TWO_WORKERS))
        # T1 = S + W and T2 = S + W/2: the part no second worker shortens, and the part it halves.
        serial = 2 * two["seconds"] - one_mp["seconds"]
        say(f"  of 1 worker's {one_mp['seconds']:.1f} s: ~{serial:.1f} s not parallel (start-up, runner, "
            f"grouping, finalize), ~{one_mp['seconds'] - serial:.1f} s split over workers")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache_dir", default=str(_ROOT / "bench_out"), help="synthetic data and run outputs")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, figures meaningless")
    p.add_argument("--kinds", default="atari,control_suite,babyai", help="comma-separated dataset kinds")
    p.add_argument("--scaling", action="store_true", help="add the 4x-data and 2-worker runs (issue 7)")
    p.add_argument("--compare_tree", type=Path, help="another source tree whose full job runs on the same data")
    p.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest counts")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        _child(json.loads(args._child))
        return 0
    started = time.perf_counter()
    kinds = [k for k in args.kinds.split(",") if k]
    run_suite(Path(args.cache_dir), QUICK_SIZES if args.quick else FULL_SIZES, kinds=kinds,
              scaling=args.scaling and "atari" in kinds, repeat=max(1, args.repeat),
              compare_tree=args.compare_tree.resolve() if args.compare_tree else None)
    print(f"suite: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
