"""Pass 1's verdict stages (`transforms/verdict.py`): every episode read in full gets the
verdict pass 2 will reach, before any threshold is computed or any shard written.

- `EpisodeVerdicts`: RawEpisode -> EpisodeReturn of each usable episode (main) and
  (TaskKey, (position, Reject)) of each episode that fails tokenization or the timestep
  fit (tagged `rejects`). Episodes that break an RLDS rule or have a non-finite return
  give nothing: pass 2 checks those itself, cheaply, and reports them.
- `UniqueEpisodeIds`: EpisodeReturns -> the returns of ids read once (main) and the
  rejects of every copy of an id read more than once (tagged `rejects`); it groups
  compact (task, id) -> EpisodeReturn pairs, never episodes.
- `JoinVerdicts`: per task, the threshold and those rejects -> (TaskKey, TaskVerdicts), the
  side input of pass 2's Filter and Sequence stages, so the Write stage cannot start
  before every duplicate is known.

Under `strict` the first failure raises here (a ValueError naming file, episode and
field; a duplicate names id, task and both files). Counters (pass 1's namespace):
`returns` (usable episodes), `rejected` (episodes pass 2 will reject, any reason),
`duplicate_ids`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam

from pipeline.counters import TaskCounters
from pipeline.rejects import REJECTS_TAG
from transforms.episode import EpisodeReturn, RawEpisode, TaskKey
from transforms.errors import TokenizationError
from transforms.expert_filter import TaskThreshold
from transforms.rlds_rules import RldsViolation
from transforms.sequence import SequencingError
from transforms.steps import num_emitted_steps
from transforms.task_tokenizer import TaskTokenizer, TokenizerConfig
from transforms.verdict import (
    NonFiniteReturn,
    TaskVerdicts,
    duplicate_rejects,
    episode_verdict,
    position,
    verdict_reject,
)

RETURNS = "returns"  # main output tag of EpisodeVerdicts and UniqueEpisodeIds
# Keys of the dict JoinVerdicts takes.
THRESHOLDS = "thresholds"  # (TaskKey, TaskThreshold)
REJECTS = "rejects"  # (TaskKey, (position, Reject))


class EpisodeVerdictsFn(beam.DoFn):
    """RawEpisode -> EpisodeReturn (main) or (TaskKey, (position, Reject)) (`rejects`)."""

    def __init__(
        self,
        config: TokenizerConfig,
        *,
        return_fn: Callable[[RawEpisode], float],
        return_field: str | None,
        namespace: str,
        strict: bool = False,
    ) -> None:
        self._config = config
        self._return_fn = return_fn
        self._return_field = return_field
        self._namespace = namespace
        self._strict = strict

    def setup(self) -> None:
        self._tokenizer = TaskTokenizer(self._config)
        self._counters = TaskCounters(self._namespace)

    def process(self, raw: RawEpisode) -> Iterator[Any]:
        task = raw.key.task_key
        try:
            value = episode_verdict(
                raw, return_fn=self._return_fn, return_field=self._return_field,
                timestep_starts=self._tokenizer.check,
                max_timestep_tokens=self._config.max_timestep_tokens,
            )
        except (RldsViolation, NonFiniteReturn):
            if self._strict:
                raise
            self._counters.inc(task, "rejected")  # pass 2 finds and reports it again
            return
        except (TokenizationError, SequencingError) as error:
            reject = verdict_reject(raw.key, error)
            if self._strict:
                raise ValueError(reject.detail) from error
            self._counters.inc(task, "rejected")
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, (task, (position(raw.key), reject)))
            return
        self._counters.inc(task, "returns")
        yield EpisodeReturn(key=raw.key, value=value, num_steps=num_emitted_steps(raw))


class EpisodeVerdicts(beam.PTransform):
    """RawEpisode -> outputs `returns` (EpisodeReturn) and `rejects` (module doc)."""

    def __init__(
        self,
        config: TokenizerConfig,
        *,
        return_fn: Callable[[RawEpisode], float],
        return_field: str | None,
        namespace: str,
        strict: bool = False,
    ) -> None:
        super().__init__()
        self._fn = EpisodeVerdictsFn(
            config, return_fn=return_fn, return_field=return_field, namespace=namespace, strict=strict
        )

    def expand(self, episodes: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return episodes | "CheckEpisode" >> beam.ParDo(self._fn).with_outputs(REJECTS_TAG, main=RETURNS)


class _SplitCopiesFn(beam.DoFn):
    def __init__(self, *, namespace: str, strict: bool) -> None:
        self._namespace = namespace
        self._strict = strict

    def setup(self) -> None:
        self._counters = TaskCounters(self._namespace)

    def process(self, grouped: tuple[tuple[TaskKey, str], Iterable[EpisodeReturn]]) -> Iterator[Any]:
        (task, _), values = grouped
        copies = list(values)
        if len(copies) == 1:
            yield copies[0]
            return
        for key, reject in duplicate_rejects([c.key for c in copies], strict=self._strict):
            self._counters.inc(task, "duplicate_ids")
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, (task, (position(key), reject)))


class UniqueEpisodeIds(beam.PTransform):
    """EpisodeReturn -> outputs `returns` (ids read once) and `rejects` (every copy of the others)."""

    def __init__(self, *, namespace: str, strict: bool = False) -> None:
        super().__init__()
        self._namespace = namespace
        self._strict = strict

    def expand(self, returns: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            returns
            | "ById" >> beam.Map(lambda r: ((r.key.task_key, r.key.episode_id), r))
            | "GroupCopies" >> beam.GroupByKey()
            | "SplitCopies" >> beam.ParDo(_SplitCopiesFn(namespace=self._namespace, strict=self._strict))
            .with_outputs(REJECTS_TAG, main=RETURNS)
        )


def _task_verdicts(grouped: tuple[TaskKey, dict[str, list[Any]]]) -> tuple[TaskKey, TaskVerdicts]:
    task, parts = grouped
    thresholds: list[TaskThreshold] = list(parts[THRESHOLDS])
    if len(thresholds) > 1:
        raise ValueError(f"task {task}: {len(thresholds)} thresholds, expected one")
    rejects = dict(parts[REJECTS])
    if len(rejects) != len(parts[REJECTS]):
        raise ValueError(f"task {task}: pass 1 rejected one record twice")
    return task, TaskVerdicts(expert=thresholds[0] if thresholds else None, rejects=rejects)


class JoinVerdicts(beam.PTransform):
    """{THRESHOLDS, REJECTS} -> (TaskKey, TaskVerdicts), one per task with either."""

    def expand(self, inputs: dict[str, beam.PCollection]) -> beam.PCollection:
        return inputs | "GroupPerTask" >> beam.CoGroupByKey() | "TaskVerdicts" >> beam.Map(_task_verdicts)
