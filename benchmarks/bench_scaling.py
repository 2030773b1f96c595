"""Per-core cost of the full job by dataset kind, and what a cluster run would need (docs/SCALING.md).

    python benchmarks/bench_scaling.py            # about 3 minutes on 2 cores, data cached under bench_out/
    python benchmarks/bench_scaling.py --quick    # tiny sizes: a smoke run, figures meaningless

For each synthetic kind (`benchmarks/synthetic.py`: Atari-like, control-suite-like,
BabyAI-like) the full job (`pipeline.job.run_job`, one in-process worker) runs on two sizes
8x apart, each in its own process. What is measured is CPU time (user + system of the run's
whole process tree), not wall time: CPU seconds are what a cluster bills and what a worker
core must supply, and other work on a shared machine inflates them far less than it
inflates wall time. The marginal cost is the slope between the two sizes, so the job's fixed
cost (pipeline construction, start-up) drops out:

    CPU us per timestep = (cpu(8n) - cpu(n)) / (timesteps(8n) - timesteps(n))

and per written token likewise. Then the projection docs/SCALING.md explains, for RL
Unplugged Atari (`RLU_ATARI_TIMESTEPS`, an assumption stated there) and Gato's Table 1
control mix (tokens per dataset, mapped to the kind whose cost per token is closest):
vCPU-hours = timesteps (or tokens) x marginal CPU cost / 3600 / `EFFICIENCY`, workers for a
wall-clock target, and cost = vCPU-hours x price per vCPU-hour + GB-hours x price per GB-hour.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: `benchmarks` is not an installed package
    sys.path.insert(0, str(_ROOT))

from benchmarks.bench_pipeline import measure  # noqa: E402
from benchmarks.synthetic import make_dataset  # noqa: E402

# (episodes, steps) of each kind at the small size; the large size has SCALE times the episodes.
SIZES = {"atari": (16, 1000), "control_suite": (16, 1001), "babyai": (32, 200)}
QUICK_SIZES = {"atari": (1, 40), "control_suite": (1, 40), "babyai": (2, 20)}
SCALE = 8
EPISODES_PER_SHARD = 2

# The projection's assumptions (docs/SCALING.md says where each comes from).
RLU_ATARI_TIMESTEPS = 46 * 5 * 50_000_000  # games x runs x agent steps per run (DQN Replay)
EFFICIENCY = 0.7  # share of a worker's vCPU time the job's own work gets on a cluster
VCPUS_PER_WORKER = 4  # n1-standard-4
GB_PER_WORKER = 15
PRICE_VCPU_HOUR = 0.056  # Dataflow batch, USD, list price to check before use
PRICE_GB_HOUR = 0.003557
WALL_HOURS = 24.0  # the wall-clock target of the projection
# Gato Table 1 (control datasets): approximate tokens, and the synthetic kind whose cost per
# token stands in for it (images -> atari, proprioception -> control_suite, grid + text -> babyai).
TABLE1_TOKENS = {
    "DM Lab": (194e9, "atari"),
    "ALE Atari": (1.26e9, "atari"),
    "ALE Atari Extended": (565e6, "atari"),
    "Sokoban": (298e6, "atari"),
    "BabyAI": (22.8e9, "babyai"),
    "DM Control Suite": (22.5e9, "control_suite"),
    "DM Control Suite Pixels": (35.5e9, "atari"),
    "DM Control Suite Random Small": (313e9, "control_suite"),
    "DM Control Suite Random Large": (791e9, "control_suite"),
    "Meta-World": (3.39e9, "control_suite"),
    "Procgen Benchmark": (4.46e9, "atari"),
    "RGB Stacking simulator": (24.4e9, "atari"),
    "RGB Stacking real robot": (980e6, "atari"),
    "Modular RL (Mujoco)": (69.6e9, "control_suite"),
    "DM Manipulation Playground": (6.58e9, "atari"),
    "Playroom": (118e9, "atari"),
}


def marginal(small: dict[str, Any], large: dict[str, Any], small_ts: int, large_ts: int) -> dict[str, float]:
    """CPU microseconds per timestep and per written token: the slope between two runs; and
    the large run's input bytes per timestep (read twice: both passes) and output bytes per token."""
    cpu = large["cpu_seconds"] - small["cpu_seconds"]
    tokens = large["written_tokens"] - small["written_tokens"]
    return {
        "us_per_timestep": 1e6 * cpu / (large_ts - small_ts),
        "us_per_token": 1e6 * cpu / max(1, tokens),
        "tokens_per_timestep": large["written_tokens"] / large_ts,
        "fixed_cpu_seconds": small["cpu_seconds"] - cpu * small_ts / (large_ts - small_ts),
        "input_bytes_per_timestep": large.get("input_bytes", 0) / large_ts,
        "output_bytes_per_token": large["output_bytes"] / max(1, large["written_tokens"]),
    }


def _input_bytes(data_dir: str) -> int:
    return sum(f.stat().st_size for f in Path(data_dir).rglob("*.tfrecord*"))


def projection(vcpu_hours: float) -> str:
    """Workers for `WALL_HOURS` and the list-price cost of `vcpu_hours` of work (module doc)."""
    billed = vcpu_hours / EFFICIENCY
    # Whole workers, rounded up: 1.4 workers' worth of work needs 2 to finish in time.
    workers = max(1, math.ceil(round(billed / VCPUS_PER_WORKER / WALL_HOURS, 6)))
    cost = billed * PRICE_VCPU_HOUR + billed / VCPUS_PER_WORKER * GB_PER_WORKER * PRICE_GB_HOUR
    return (f"{billed:,.0f} vCPU-h billed, {workers:,} worker{'s' if workers > 1 else ''} x {WALL_HOURS:.0f} h, "
            f"~${cost:,.0f}")


def run(cache_dir: Path, sizes: dict[str, tuple[int, int]], kinds: Sequence[str]) -> list[str]:
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    work_dir = cache_dir / "runs"
    work_dir.mkdir(parents=True, exist_ok=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    say(f"machine: {os.cpu_count()} cores, load average {load}; full job, 1 in-process worker; CPU time")
    costs: dict[str, dict[str, float]] = {}
    for kind in kinds:
        episodes, steps = sizes[kind]
        runs = []
        for scale in (1, SCALE):
            data = make_dataset(kind, cache_dir=cache_dir / "data", episodes=episodes * scale, steps=steps,
                                episodes_per_shard=EPISODES_PER_SHARD)
            result = measure("full", data, workers=1, work_dir=work_dir, label=f"scaling-{kind}-{scale}")
            runs.append((data.timesteps, {**result, "input_bytes": _input_bytes(data.data_dir)}))
        (small_ts, small), (large_ts, large) = runs
        cost = costs[kind] = marginal(small, large, small_ts, large_ts)
        say(f"{kind}: {cost['us_per_timestep']:.1f} CPU us/timestep ({1e6 / cost['us_per_timestep']:,.0f} "
            f"timesteps/s per core), {cost['us_per_token']:.3f} CPU us/token, "
            f"{cost['tokens_per_timestep']:.1f} written tokens/timestep, fixed {cost['fixed_cpu_seconds']:.1f} CPU s "
            f"({small_ts:,} and {large_ts:,} timesteps); input {cost['input_bytes_per_timestep']:,.0f} bytes/timestep, "
            f"output {cost['output_bytes_per_token']:.2f} bytes/token")
    if "atari" in costs:
        hours = RLU_ATARI_TIMESTEPS * costs["atari"]["us_per_timestep"] / 1e6 / 3600
        say(f"RL Unplugged Atari ({RLU_ATARI_TIMESTEPS:,} timesteps): {hours:,.0f} vCPU-h of work; {projection(hours)}")
    if set(costs) >= {"atari", "control_suite", "babyai"}:
        hours = sum(tokens * costs[kind]["us_per_token"] for tokens, kind in TABLE1_TOKENS.values()) / 1e6 / 3600
        total = sum(tokens for tokens, _ in TABLE1_TOKENS.values())
        say(f"Gato Table 1 control mix ({total / 1e12:.2f} T tokens): {hours:,.0f} vCPU-h of work; {projection(hours)}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--cache_dir", default=str(_ROOT / "bench_out"), help="synthetic data and run outputs")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, figures meaningless")
    p.add_argument("--kinds", default="atari,control_suite,babyai", help="comma-separated dataset kinds")
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    run(Path(args.cache_dir), QUICK_SIZES if args.quick else SIZES, kinds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
