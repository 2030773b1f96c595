"""RLDS rules on a read episode (spec section 7), and the helpers every later stage uses.

Rules (checked in this order; the first broken one is the reject reason):
- the step flags `is_first` and `is_last` exist;
- every step leaf has the same length (the number of RLDS steps);
- `is_first` is True exactly at step 0;
- `is_last` is True exactly at the final step (none at all: `rlds_is_last`);
- at least one emitted timestep (the final is_last step is never emitted).

`ValidateEpisodes` applies them in Beam: valid episodes on the main output, a `Reject`
per broken episode on the `rejects` output, or a ValueError with `strict=True`.
"""

from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam

from transforms.episode import RawEpisode
from transforms.rlds_rules import RldsViolation, check_rlds

VALID = "valid"  # main output tag of ValidateEpisodes
REJECTS = "rejects"


class ValidateEpisodesFn(beam.DoFn):
    """RawEpisode -> valid RawEpisode (main) or Reject (`rejects`); strict: raise."""

    def __init__(self, *, strict: bool = False) -> None:
        self._strict = strict

    def process(self, raw: RawEpisode) -> Iterator[Any]:
        try:
            check_rlds(raw)
        except RldsViolation as violation:
            if self._strict:
                raise
            beam.metrics.Metrics.counter("validate", f"rejected/{raw.key.task}").inc()
            yield beam.pvalue.TaggedOutput(REJECTS, violation.to_reject(raw))
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
        ).with_outputs(REJECTS, main=VALID)
