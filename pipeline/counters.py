"""Per-task Beam counters: one helper for every stage, so every counter is named alike.

A counter is `<namespace>:<dataset>/<task>/<what>`, namespace `gato.<stage>` (e.g.
`gato.filter:atari/rlu_atari/Pong_run_1/kept`); `pipeline.job.counter_summary` reads them
back per task. `TaskCounters` makes each Beam counter once per DoFn instance and caches
it: counters are looked up per episode, and Beam's lookup allocates a metric name each time.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.metric import Metrics

from transforms.episode import TaskKey

NAMESPACE_PREFIX = "gato."


def counter_name(task: TaskKey, what: str) -> str:
    """Beam counter name of one per-task count, e.g. `atari/rlu_atari/Pong_run_1/kept`."""
    return f"{task[0]}/{task[1]}/{what}"


class TaskCounters:
    """The counters of one stage (`namespace`), keyed by (task, what), made on first use.

    Create it in `DoFn.setup()` (a Beam counter object is not meant to be pickled).
    `inc(task, what, 0)` does nothing, so a stage can count unconditionally.
    """

    def __init__(self, namespace: str) -> None:
        if not namespace.startswith(NAMESPACE_PREFIX):
            raise ValueError(f"counter namespace {namespace!r} must start with {NAMESPACE_PREFIX!r}")
        self.namespace = namespace
        self._counters: dict[tuple[TaskKey, str], beam.metrics.metricbase.Counter] = {}

    def inc(self, task: TaskKey, what: str, n: int = 1) -> None:
        if n == 0:
            return
        counter = self._counters.get((task, what))
        if counter is None:
            counter = self._counters[(task, what)] = Metrics.counter(self.namespace, counter_name(task, what))
        counter.inc(n)
