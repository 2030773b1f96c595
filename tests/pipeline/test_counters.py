"""pipeline/counters.py: per-task counters `<namespace>:<dataset>/<task>/<what>`, read back from
a real pipeline's metrics; only `gato.` namespaces; n == 0 counts nothing."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline

from pipeline.counters import NAMESPACE_PREFIX, TaskCounters, counter_name

RUNNER = "BundleBasedDirectRunner"


class _Count(beam.DoFn):
    """Counts each (dataset, task, what, n) element with `TaskCounters`, made in setup()."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace

    def setup(self) -> None:
        self._counters = TaskCounters(self._namespace)

    def process(self, element: tuple[str, str, str, int]):
        dataset, task, what, n = element
        self._counters.inc((dataset, task), what, n)
        yield element


def _run(elements: list[tuple[str, str, str, int]], namespace: str = "gato.test") -> dict[tuple[str, str], int]:
    """{(namespace, counter name): committed value} of every counter the pipeline reported."""
    p = TestPipeline(runner=RUNNER)
    _ = p | beam.Create(elements) | beam.ParDo(_Count(namespace))
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter())["counters"]
    return {(c.key.metric.namespace, c.key.metric.name): c.committed for c in counters}


def test_counter_names_are_dataset_task_what() -> None:
    assert counter_name(("atari", "rlu_atari/Pong_run_1"), "kept") == "atari/rlu_atari/Pong_run_1/kept"


def test_counts_are_summed_per_task_and_what_under_the_stage_namespace() -> None:
    found = _run([
        ("atari", "rlu_atari/Pong_run_1", "kept", 1),
        ("atari", "rlu_atari/Pong_run_1", "kept", 1),
        ("atari", "rlu_atari/Pong_run_1", "dropped", 5),
        ("atari", "rlu_atari/Breakout_run_1", "kept", 2),
        ("dmlab", "rlu_dmlab/x", "kept", 3),
    ], namespace="gato.filter")
    assert found == {
        ("gato.filter", "atari/rlu_atari/Pong_run_1/kept"): 2,
        ("gato.filter", "atari/rlu_atari/Pong_run_1/dropped"): 5,
        ("gato.filter", "atari/rlu_atari/Breakout_run_1/kept"): 2,
        ("gato.filter", "dmlab/rlu_dmlab/x/kept"): 3,
    }


def test_an_increment_of_zero_makes_no_counter() -> None:
    found = _run([("d", "t", "rejected", 0), ("d", "t", "rejected", 0), ("d", "t", "kept", 1)])
    assert found == {("gato.test", "d/t/kept"): 1}


def test_default_increment_is_one() -> None:
    class _IncOnce(beam.DoFn):
        def setup(self) -> None:
            self._counters = TaskCounters("gato.once")

        def process(self, element: str):
            self._counters.inc(("d", element), "seen")
            yield element

    p = TestPipeline(runner=RUNNER)
    _ = p | beam.Create(["a", "a", "a", "b"]) | beam.ParDo(_IncOnce())
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace("gato.once"))["counters"]
    assert {c.key.metric.name: c.committed for c in counters} == {"d/a/seen": 3, "d/b/seen": 1}


@pytest.mark.parametrize("namespace", ["filter", "gato", "gatofilter", "Gato.filter", ""])
def test_the_namespace_must_start_with_gato_dot(namespace: str) -> None:
    assert NAMESPACE_PREFIX == "gato."
    with pytest.raises(ValueError, match=f"counter namespace {namespace!r} must start with 'gato.'"):
        TaskCounters(namespace)
    assert TaskCounters("gato.x").namespace == "gato.x"
