"""pipeline/rejects.py: `reject_or_raise` puts a Reject on the `rejects` output and counts
it under the given counter name, or with `strict` raises the given error (by default a
ValueError with the reject's detail) from the given cause, counting nothing."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counters import TaskCounters, counter_name
from pipeline.rejects import REJECTS_TAG, reject_or_raise
from transforms.episode import Reject, TaskKey

RUNNER = "BundleBasedDirectRunner"
NAMESPACE = "gato.test_rejects"


def _reject(episode_id: str, task: str = "t/a") -> Reject:
    return Reject("toy", task, episode_id, "shard-0", "non_finite", "observation/x",
                  f"file 'shard-0' (record 0), task {task!r}: episode {episode_id!r} has NaN")


class _Recording(TaskCounters):
    """TaskCounters that also records every (task, what, n) it is asked to count."""

    def __init__(self) -> None:
        super().__init__(NAMESPACE)
        self.calls: list[tuple[TaskKey, str, int]] = []

    def inc(self, task: TaskKey, what: str, n: int = 1) -> None:
        self.calls.append((task, what, n))
        super().inc(task, what, n)


def test_rejects_tag_is_the_documented_name() -> None:
    assert REJECTS_TAG == "rejects"


def test_a_reject_goes_on_the_rejects_output_and_is_counted() -> None:
    counters = _Recording()
    reject = _reject("e1")
    out = reject_or_raise(reject, strict=False, counters=counters)
    assert isinstance(out, beam.pvalue.TaggedOutput)
    assert (out.tag, out.value) == (REJECTS_TAG, reject)
    assert counters.calls == [(("toy", "t/a"), "rejected", 1)]
    reject_or_raise(_reject("e2", "t/b"), strict=False, counters=counters, counter="corrupt_records")
    assert counters.calls[-1] == (("toy", "t/b"), "corrupt_records", 1)


def test_strict_raises_the_given_error_from_the_cause_and_counts_nothing() -> None:
    counters = _Recording()
    cause = KeyError("the low-level failure")
    error = RuntimeError("the stage's own message")
    with pytest.raises(RuntimeError, match="the stage's own message") as info:
        reject_or_raise(_reject("e1"), strict=True, counters=counters, error=error, cause=cause)
    assert info.value is error and info.value.__cause__ is cause
    assert counters.calls == []


def test_strict_raises_a_value_error_with_the_detail_by_default() -> None:
    reject = _reject("e1")
    cause = ArithmeticError("nan")
    with pytest.raises(ValueError) as info:
        reject_or_raise(reject, strict=True, counters=_Recording(), cause=cause)
    assert type(info.value) is ValueError and str(info.value) == reject.detail
    assert info.value.__cause__ is cause
    with pytest.raises(ValueError) as uncaused:
        reject_or_raise(reject, strict=True, counters=_Recording())
    assert uncaused.value.__cause__ is None


class _RejectOddFn(beam.DoFn):
    """int -> itself if even, else a Reject through `reject_or_raise` (counter `odd`)."""

    def __init__(self, *, strict: bool) -> None:
        self._strict = strict

    def setup(self) -> None:
        self._counters = TaskCounters(NAMESPACE)

    def process(self, n: int) -> Iterator[object]:
        if n % 2:
            yield reject_or_raise(_reject(f"e{n}", task=f"t/{n % 3}"), strict=self._strict,
                                  counters=self._counters, counter="odd")
        else:
            yield n


def test_in_beam_rejects_are_tagged_and_counted_per_task_under_the_counter_name() -> None:
    p = TestPipeline(runner=RUNNER)
    out = p | beam.Create(range(10)) | beam.ParDo(_RejectOddFn(strict=False)).with_outputs(REJECTS_TAG, main="kept")
    assert_that(out.kept, equal_to([0, 2, 4, 6, 8]), label="Kept")
    assert_that(out[REJECTS_TAG] | beam.Map(lambda r: r.episode_id), equal_to(["e1", "e3", "e5", "e7", "e9"]),
                label="Rejects")
    result = p.run()
    result.wait_until_finish()

    def committed(what: str, task: str) -> list[int]:
        name = counter_name(("toy", task), what)
        return [c.committed for c in result.metrics().query(MetricsFilter().with_name(name))["counters"]]

    # odd n -> task t/<n % 3>: 1, 7 -> t/1; 3, 9 -> t/0; 5 -> t/2
    assert (committed("odd", "t/0"), committed("odd", "t/1"), committed("odd", "t/2")) == ([2], [2], [1])
    assert committed("rejected", "t/1") == []  # only the given counter name


def test_in_beam_strict_stops_the_job_with_the_detail() -> None:
    with pytest.raises(ValueError, match="episode 'e3' has NaN"):
        with TestPipeline(runner=RUNNER) as p:
            _ = p | beam.Create([2, 3]) | beam.ParDo(_RejectOddFn(strict=True)).with_outputs(REJECTS_TAG, main="kept")
