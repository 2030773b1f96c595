"""The one way a Beam stage gives up on an episode: a `Reject` on its `rejects` output,
counted per task, or under `--strict` an error that stops the job.

Every stage with a `rejects` output uses `REJECTS_TAG` and `reject_or_raise`, so
rejects are tagged, counted (`<namespace>:<dataset>/<task>/<counter>`) and raised alike.
The job flattens the stages' `rejects` outputs into one collection for the rejects
shards and the statistics (spec section 7: read = kept + dropped + rejected per task).
"""

from __future__ import annotations

import apache_beam as beam

from pipeline.counters import TaskCounters
from transforms.episode import Reject

REJECTS_TAG = "rejects"


def reject_or_raise(
    reject: Reject,
    *,
    strict: bool,
    counters: TaskCounters,
    counter: str = "rejected",
    error: Exception | None = None,
    cause: BaseException | None = None,
) -> beam.pvalue.TaggedOutput:
    """`reject` on the `rejects` output, counted as `counter`; with `strict`, raises
    `error` (default: a ValueError with the reject's detail, which names file and episode)
    from `cause` instead."""
    if strict:
        raise (error if error is not None else ValueError(reject.detail)) from cause
    counters.inc(reject.task_key, counter)
    return beam.pvalue.TaggedOutput(REJECTS_TAG, reject)
