"""The Validate stage: RLDS rules (`transforms.rlds_rules.check_rlds`) applied in Beam.

Valid episodes go on the main output (`valid`), a `Reject` per broken episode on the
`rejects` output (counter `gato.validate:<dataset>/<task>/rejected`), or with
`strict=True` the rule's own `RldsViolation` (a ValueError naming file, record, task,
episode and field) stops the job.
"""

from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam

from pipeline.counters import TaskCounters
from pipeline.rejects import REJECTS_TAG, reject_or_raise
from transforms.episode import RawEpisode
from transforms.rlds_rules import RldsViolation, check_rlds

VALID = "valid"  # main output tag of ValidateEpisodes
COUNTER_NAMESPACE = "gato.validate"


class ValidateEpisodesFn(beam.DoFn):
    """RawEpisode -> valid RawEpisode (main) or Reject (`rejects`); strict: raise."""

    def __init__(self, *, strict: bool = False) -> None:
        self._strict = strict

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, raw: RawEpisode) -> Iterator[Any]:
        try:
            check_rlds(raw)
        except RldsViolation as violation:
            yield reject_or_raise(
                violation.to_reject(raw), strict=self._strict, counters=self._counters, error=violation
            )
            return
        yield raw


class ValidateEpisodes(beam.PTransform):
    """Apply the RLDS rules; outputs `valid` (main) and `rejects`."""

    def __init__(self, *, strict: bool = False, label: str | None = None) -> None:
        super().__init__(label)
        self._strict = strict

    def expand(self, episodes: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return episodes | "CheckRlds" >> beam.ParDo(
            ValidateEpisodesFn(strict=self._strict)
        ).with_outputs(REJECTS_TAG, main=VALID)
