"""Reader throughput: sequences and tokens per second streamed from local shards, on one core.

Writes a control-suite-like output (1024-token sequences of continuous proprio tokens,
no images; or with --kind atari, 84x84 grayscale frames as 36 patches per timestep;
zstd level 3, row groups of 128 rows, as `formats.parquet_shards` writes them) unless
--output points at an existing one, then streams it with the reader (background
read-ahead on) and prints the time to first batch and the steady rate.
Target (issue 6): >= 2,000 sequences of 1024 tokens per second on one core.

With --world-sizes 1,2,8 it writes the output once and measures one rank's work in
isolation at each world size: rank 0 streams in its own process, pinned to one core with
taskset when there is one (as a rank would run on its own core; it deals every sample of
the global stream and decodes only its own row groups), --repeat times, fastest kept.
It prints per-rank sequences/s and the ratio world 8 / world 1 against the target
(issue 16): >= 0.8.

    PYTHONPATH=. taskset -c 0 python benchmarks/bench_reader.py --sequences 16384 [--kind atari]
    PYTHONPATH=. python benchmarks/bench_reader.py --world-sizes 1,2,8 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from formats.parquet_shards import sequence_schema
from reader import GatoReader, ReaderOptions
from schemas import output as out
from schemas.vocab import GATO, IMAGE_NORMALIZATION, LOCAL_POSITION_TABLE, Modality

TASKS = ("walker_walk", "cheetah_run", "humanoid_run", "cartpole_swingup")
# Per timestep: observation tokens, separator, action tokens.
# control: walker-sized proprio, 67 continuous values and 6 continuous actions;
# atari: an 84x84 grayscale frame padded to 96x96 = 36 patches, one discrete action.
KINDS = {"control": (67, 6), "atari": (36, 1)}
PATCH_BYTES = 16 * 16  # grayscale


def _list_column(values: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """[n, k] values as a list column (k per row), built without Python objects."""
    n, k = values.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), type=value_type))


def _patch_columns(n: int, per_row: int, rng: np.random.Generator) -> tuple[pa.ListArray, pa.ListArray]:
    total = n * per_row
    # A few gray levels per patch, as in Atari frames (uniform noise would not compress at all).
    palette = np.array([0, 48, 96, 144, 200, 228], dtype=np.uint8)
    data = palette[(rng.integers(0, len(palette), size=(total, 1)) + (rng.random((total, PATCH_BYTES)) < 0.1)) % len(palette)]
    byte_offsets = np.arange(0, (total + 1) * PATCH_BYTES, PATCH_BYTES, dtype=np.int32)
    binary = pa.Array.from_buffers(pa.binary(), total, [None, pa.py_buffer(byte_offsets), pa.py_buffer(data.tobytes())])
    pixels = pa.ListArray.from_arrays(pa.array(np.arange(0, total + 1, per_row, dtype=np.int32)), binary)
    grid = np.arange(per_row) % 36
    row, col = grid // 6, grid % 6
    one = np.stack([row * 128 // 6, (row + 1) * 128 // 6, col * 128 // 6, (col + 1) * 128 // 6], axis=1).astype(np.int16)
    positions = _list_column(np.broadcast_to(one.ravel(), (n, per_row * 4)), pa.int16())
    return pixels, positions


def _rows(kind: str, task: str, start: int, n: int, length: int, rng: np.random.Generator) -> pa.Table:
    OBS_TOKENS, ACT_TOKENS = KINDS[kind]  # noqa: N806
    step = OBS_TOKENS + 1 + ACT_TOKENS
    steps = length // step
    used = steps * step
    in_step = np.arange(used) % step
    modality = np.full(length, int(Modality.PAD), dtype=np.int8)
    obs_modality, act_modality = (Modality.IMAGE, Modality.DISCRETE) if kind == "atari" else (Modality.CONTINUOUS,) * 2
    modality[:used] = np.where(
        in_step < OBS_TOKENS, int(obs_modality), np.where(in_step == OBS_TOKENS, int(Modality.SEPARATOR), int(act_modality))
    )
    local = np.zeros(length, dtype=np.int16)
    local[:used] = np.where(in_step < OBS_TOKENS, in_step, LOCAL_POSITION_TABLE - 1)
    loss = np.zeros(length, dtype=bool)
    loss[:used] = in_step > OBS_TOKENS
    timestep = np.full(length, out.NO_TIMESTEP, dtype=np.int32)
    timestep[:used] = np.arange(used) // step
    tokens = np.full((n, length), GATO.pad, dtype=np.int32)
    tokens[:, :used] = GATO.continuous_offset + rng.integers(300, 700, size=(n, used))
    tokens[:, :used][:, in_step == OBS_TOKENS] = GATO.separator
    if kind == "atari":
        tokens[:, :used][:, in_step < OBS_TOKENS] = GATO.image_placeholder
        tokens[:, :used][:, in_step > OBS_TOKENS] = rng.integers(0, 18, size=(n, steps * ACT_TOKENS))
        pixels, positions = _patch_columns(n, steps * OBS_TOKENS, rng)
    else:
        pixels = pa.array([[] for _ in range(n)], type=pa.list_(pa.binary()))
        positions = pa.array([[] for _ in range(n)], type=pa.list_(pa.int16()))
    list_of = lambda a, t: _list_column(np.broadcast_to(a, (n, length)), t)  # noqa: E731
    columns = {
        out.DATASET: pa.array([kind] * n).dictionary_encode(),
        out.TASK: pa.array([task] * n).dictionary_encode(),
        out.EPISODE_ID: pa.array([f"{task}-{(start + i) // 8}" for i in range(n)]),
        out.SEQUENCE_INDEX: pa.array(((start + np.arange(n)) % 8).astype(np.int32)),
        out.NUM_TOKENS: pa.array(np.full(n, used, dtype=np.int32)),
        out.TOKENS: _list_column(tokens, pa.int32()),
        out.MODALITY: list_of(modality, pa.int8()),
        out.LOSS_MASK: list_of(loss, pa.bool_()),
        out.LOCAL_POSITIONS: list_of(local, pa.int16()),
        out.TIMESTEP: list_of(timestep, pa.int32()),
        out.IS_PROMPT: list_of(np.zeros(length, dtype=bool), pa.bool_()),
        out.PROMPT_EPISODE_ID: pa.nulls(n, pa.string()),
        out.PATCH_PIXELS: pixels,
        out.PATCH_POSITIONS: positions,
    }
    # The schema metadata (layout, fields, sequence length) the writer gives every shard.
    return pa.Table.from_pydict(columns).cast(sequence_schema(layout=GATO, fields={}, sequence_length=length))


def write_benchmark_output(root: str, sequences: int, length: int, *, kind: str = "control") -> None:
    rng = np.random.default_rng(0)
    per_task = sequences // len(TASKS)
    shards = []
    for task in TASKS:
        relative = f"sequences/{kind}/{task}/part-00000.parquet"
        path = os.path.join(root, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        schema = sequence_schema(layout=GATO, fields={}, sequence_length=length)
        with pq.ParquetWriter(path, schema, compression="zstd", compression_level=3) as writer:
            for start in range(0, per_task, 1024):
                n = min(1024, per_task - start)
                writer.write_table(_rows(kind, task, start, n, length, rng), row_group_size=128)
        data = open(path, "rb").read()
        shards.append({out.S_PATH: relative, out.S_DATASET: kind, out.S_TASK: task, out.S_ROWS: per_task,
                       out.S_TOKENS: 0, out.S_BYTES: len(data), out.S_SHA256: hashlib.sha256(data).hexdigest()})
    manifest = {
        out.M_FORMAT_VERSION: out.MANIFEST_FORMAT_VERSION, out.M_CONFIG: {}, out.M_CONFIG_HASH: "bench",
        out.M_VOCABULARY: GATO.to_metadata(), out.M_SEQUENCE_LENGTH: length,
        out.M_IMAGE_NORMALIZATION: IMAGE_NORMALIZATION, out.M_FIELDS: {},
        out.M_SAMPLING_WEIGHTS: {kind: {"weight": 1.0, "tasks": {t: 1 / len(TASKS) for t in TASKS}}},
        out.M_SHARDS: shards, out.M_REJECTS: [], out.M_STATS: {},
    }
    with open(os.path.join(root, out.MANIFEST_FILE), "w") as f:
        json.dump(manifest, f)


SCALING_TARGET = 0.8  # per-rank rate at the largest world size / at world size 1


def _per_rank_rate(root: str, world: int, args: argparse.Namespace) -> float:
    """Sequences/s of rank 0 of `world`, in a fresh process pinned to core 0 if possible."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    command = [*pin, sys.executable, __file__, "--output", root, "--world-size", str(world),
               "--batches", str(args.batches), "--batch-size", str(args.batch_size),
               "--shuffle-buffer", str(args.shuffle_buffer), "--prefetch", str(args.prefetch)]
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(re.search(r"steady: ([\d,]+) sequences/s", text).group(1).replace(",", ""))


def scaling(args: argparse.Namespace) -> None:
    worlds = [int(w) for w in args.world_sizes.split(",")]
    root = args.output or tempfile.mkdtemp(prefix="bench_reader_")
    try:
        if not args.output:
            write_benchmark_output(root, args.sequences, 1024, kind=args.kind)
        best = {w: max(_per_rank_rate(root, w, args) for _ in range(args.repeat)) for w in worlds}
    finally:
        if not args.output:
            shutil.rmtree(root)
    how = "taskset -c 0, one process per measurement" if shutil.which("taskset") else "no taskset: unpinned"
    print(f"per-rank rate, rank 0 alone ({how}), fastest of {args.repeat}, load average {os.getloadavg()[0]:.2f}:")
    for w in worlds:
        print(f"  world size {w}: {best[w]:,.0f} sequences/s per rank")
    ratio = best[worlds[-1]] / best[worlds[0]]
    verdict = "met" if ratio >= SCALING_TARGET else "missed"
    print(f"world {worlds[-1]} / world {worlds[0]}: {ratio:.2f} (target >= {SCALING_TARGET}, {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="an existing finished output (default: write one to a temp dir)")
    parser.add_argument("--sequences", type=int, default=16384, help="sequences to write when generating")
    parser.add_argument("--kind", choices=sorted(KINDS), default="control", help="what to generate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=400, help="batches to time")
    parser.add_argument("--shuffle-buffer", type=int, default=1024)
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument(
        "--no-verify-checksums", action="store_true", help="skip the per-shard sha256 check (to measure its cost)"
    )
    parser.add_argument(
        "--world-size", type=int, default=1, help="stream rank 0 of this many (a rank decodes only its own row groups)"
    )
    parser.add_argument("--world-sizes", help="e.g. 1,2,8: per-rank rate at each world size, one process each")
    parser.add_argument("--repeat", type=int, default=3, help="runs per world size (--world-sizes); fastest kept")
    args = parser.parse_args()
    if args.world_sizes:
        scaling(args)
        return
    # One core: no Arrow thread pools beyond the reader's own read-ahead thread.
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    root = args.output or tempfile.mkdtemp(prefix="bench_reader_")
    if not args.output:
        t = time.perf_counter()
        write_benchmark_output(root, args.sequences, 1024, kind=args.kind)
        print(f"wrote {args.sequences} sequences to {root} in {time.perf_counter() - t:.1f} s")
    t0 = time.perf_counter()
    reader = GatoReader(root, ReaderOptions(
        seed=0,
        shuffle_buffer=args.shuffle_buffer,
        prefetch=args.prefetch,
        image_channels=1,  # both kinds hold grayscale patches at most
        verify_checksums=not args.no_verify_checksums,
    ))
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
    shard_bytes = sum(f.fs.size(f.path) for f in reader.index.files)
    if not args.output:
        shutil.rmtree(root)
    sequences = args.batches * args.batch_size
    print(f"patch array per batch: {first[out.PATCH_PIXELS].shape} {first[out.PATCH_PIXELS].dtype}")
    verified = "off" if args.no_verify_checksums else "on (each shard hashed once, on first read)"
    print(f"{len(reader.index.files)} shards, {shard_bytes / 1e6:.1f} MB; sha256 verification {verified}")
    print(f"time to first batch: {t_first * 1000:.0f} ms (open manifest + footers + first row groups)")
    print(
        f"steady: {sequences / elapsed:,.0f} sequences/s, {sequences * length / elapsed / 1e6:.2f} M tokens/s "
        f"({real_tokens / elapsed / 1e6:.2f} M non-pad tokens/s), batch {args.batch_size}x{length}, "
        f"world size {args.world_size}, {sequences} sequences in {elapsed:.2f} s wall, {cpu:.2f} s CPU (all threads)"
    )


if __name__ == "__main__":
    main()
