"""Reader throughput: sequences and tokens per second streamed from local shards, on one core.

Writes a control-suite-like output (1024-token sequences of continuous proprio tokens,
no images; zstd level 3, row groups of 128 rows, as `pipeline.write` writes them) unless
--output points at an existing one, then streams it with the reader (background
read-ahead on) and prints the time to first batch and the steady rate.
Target (issue 6): >= 2,000 sequences of 1024 tokens per second on one core.

    taskset -c 0 python benchmarks/bench_reader.py --sequences 16384
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reader import GatoReader, ReaderOptions
from schemas import output as out
from schemas.vocab import GATO, IMAGE_NORMALIZATION, LOCAL_POSITION_TABLE, Modality

TASKS = ("walker_walk", "cheetah_run", "humanoid_run", "cartpole_swingup")
OBS_TOKENS = 67  # walker-sized proprio: 67 continuous values, then separator, 6 actions
ACT_TOKENS = 6


def _rows(task: str, start: int, n: int, length: int, rng: np.random.Generator) -> pa.Table:
    step = OBS_TOKENS + 1 + ACT_TOKENS
    steps = length // step
    used = steps * step
    in_step = np.arange(used) % step
    modality = np.full(length, int(Modality.PAD), dtype=np.int8)
    modality[:used] = np.where(in_step == OBS_TOKENS, int(Modality.SEPARATOR), int(Modality.CONTINUOUS))
    local = np.zeros(length, dtype=np.int16)
    local[:used] = np.where(in_step < OBS_TOKENS, in_step, LOCAL_POSITION_TABLE - 1)
    loss = np.zeros(length, dtype=bool)
    loss[:used] = in_step > OBS_TOKENS
    timestep = np.full(length, out.NO_TIMESTEP, dtype=np.int32)
    timestep[:used] = np.arange(used) // step
    tokens = np.full((n, length), GATO.pad, dtype=np.int32)
    tokens[:, :used] = GATO.continuous_offset + rng.integers(300, 700, size=(n, used))
    tokens[:, :used][:, in_step == OBS_TOKENS] = GATO.separator
    list_of = lambda a, t: pa.array(list(np.broadcast_to(a, (n, length))), type=pa.list_(t))  # noqa: E731
    columns = {
        out.DATASET: pa.array(["control"] * n).dictionary_encode(),
        out.TASK: pa.array([task] * n).dictionary_encode(),
        out.EPISODE_ID: pa.array([f"{task}-{(start + i) // 8}" for i in range(n)]),
        out.SEQUENCE_INDEX: pa.array(((start + np.arange(n)) % 8).astype(np.int32)),
        out.NUM_TOKENS: pa.array(np.full(n, used, dtype=np.int32)),
        out.TOKENS: pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * length, length, dtype=np.int32)), pa.array(tokens.ravel())),
        out.MODALITY: list_of(modality, pa.int8()),
        out.LOSS_MASK: list_of(loss, pa.bool_()),
        out.LOCAL_POSITIONS: list_of(local, pa.int16()),
        out.TIMESTEP: list_of(timestep, pa.int32()),
        out.IS_PROMPT: list_of(np.zeros(length, dtype=bool), pa.bool_()),
        out.PROMPT_EPISODE_ID: pa.nulls(n, pa.string()),
        out.PATCH_PIXELS: pa.array([[] for _ in range(n)], type=pa.list_(pa.binary())),
        out.PATCH_POSITIONS: pa.array([[] for _ in range(n)], type=pa.list_(pa.int16())),
    }
    return pa.Table.from_pydict(columns).cast(out.SEQUENCE_SCHEMA)


def write_benchmark_output(root: str, sequences: int, length: int) -> None:
    rng = np.random.default_rng(0)
    per_task = sequences // len(TASKS)
    shards = []
    for task in TASKS:
        relative = f"sequences/control/{task}/part-00000.parquet"
        path = os.path.join(root, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with pq.ParquetWriter(path, out.SEQUENCE_SCHEMA, compression="zstd", compression_level=3) as writer:
            for start in range(0, per_task, 1024):
                n = min(1024, per_task - start)
                writer.write_table(_rows(task, start, n, length, rng), row_group_size=128)
        data = open(path, "rb").read()
        shards.append({out.S_PATH: relative, out.S_DATASET: "control", out.S_TASK: task, out.S_ROWS: per_task,
                       out.S_TOKENS: 0, out.S_BYTES: len(data), out.S_SHA256: hashlib.sha256(data).hexdigest()})
    manifest = {
        out.M_FORMAT_VERSION: out.MANIFEST_FORMAT_VERSION, out.M_CONFIG: {}, out.M_CONFIG_HASH: "bench",
        out.M_VOCABULARY: GATO.to_metadata(), out.M_SEQUENCE_LENGTH: length,
        out.M_IMAGE_NORMALIZATION: IMAGE_NORMALIZATION, out.M_FIELDS: {},
        out.M_SAMPLING_WEIGHTS: {"control": {"weight": 1.0, "tasks": {t: 1 / len(TASKS) for t in TASKS}}},
        out.M_SHARDS: shards, out.M_REJECTS: [], out.M_STATS: {},
    }
    with open(os.path.join(root, out.MANIFEST_FILE), "w") as f:
        json.dump(manifest, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="an existing finished output (default: write one to a temp dir)")
    parser.add_argument("--sequences", type=int, default=16384, help="sequences to write when generating")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=400, help="batches to time")
    parser.add_argument("--shuffle-buffer", type=int, default=1024)
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument(
        "--world-size", type=int, default=1, help="stream rank 0 of this many (each rank reads the row groups of its samples)"
    )
    args = parser.parse_args()
    # One core: no Arrow thread pools beyond the reader's own read-ahead thread.
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    root = args.output or tempfile.mkdtemp(prefix="bench_reader_")
    if not args.output:
        t = time.perf_counter()
        write_benchmark_output(root, args.sequences, 1024)
        print(f"wrote {args.sequences} sequences to {root} in {time.perf_counter() - t:.1f} s")
    t0 = time.perf_counter()
    reader = GatoReader(root, ReaderOptions(seed=0, shuffle_buffer=args.shuffle_buffer, prefetch=args.prefetch))
    stream = reader.batches(args.batch_size, rank=0, world_size=args.world_size)
    first = next(stream)
    t_first = time.perf_counter() - t0
    length = first[out.TOKENS].shape[1]
    t1 = time.perf_counter()
    cpu1 = time.process_time()
    real_tokens = 0
    for _ in range(args.batches):
        batch = next(stream)
        real_tokens += int((batch[out.MODALITY] != Modality.PAD).sum())
    elapsed = time.perf_counter() - t1
    cpu = time.process_time() - cpu1
    stream.close()
    if not args.output:
        shutil.rmtree(root)
    sequences = args.batches * args.batch_size
    print(f"time to first batch: {t_first * 1000:.0f} ms (open manifest + footers + first row groups)")
    print(
        f"steady: {sequences / elapsed:,.0f} sequences/s, {sequences * length / elapsed / 1e6:.2f} M tokens/s "
        f"({real_tokens / elapsed / 1e6:.2f} M non-pad tokens/s), batch {args.batch_size}x{length}, "
        f"world size {args.world_size}, {sequences} sequences in {elapsed:.2f} s wall, {cpu:.2f} s CPU (all threads)"
    )


if __name__ == "__main__":
    main()
