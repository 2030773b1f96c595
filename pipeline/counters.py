"""The expert-return episode filter (spec section 4): thresholds per task, then keep or drop.

Per task, with N episodes in collection order and returns R_1..R_N:
    W = max(1, min(cap, floor(0.1 * N)))            (cap = 1000 by default)
    E = max over j of mean(R_j .. R_{j+W-1})         (the expert return)
    keep an episode when R >= E - (1 - fraction) * |E|   (fraction = 0.8 by default)

Two Beam stages: `ExpertThresholds` reduces per-episode returns (never whole episodes)
to one `TaskThreshold` per task, used as an `AsDict` side input by `FilterEpisodes`,
which keeps or drops every `RawEpisode` and reports a `FilterDecision` for each.
The pure functions (`window_size`, `expert_return`) hold all the arithmetic.
"""

from __future__ import annotations

from transforms.episode import TaskKey


def counter_name(task: TaskKey, what: str) -> str:
    """Beam counter name of one per-task count, e.g. `atari/rlu_atari/Pong_run_1/kept`."""
    return f"{task[0]}/{task[1]}/{what}"
