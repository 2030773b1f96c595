"""One verdict per episode, the same in both passes (spec section 7): usable, or a reject.

An episode is usable when it passes, in this order (the first failure is the reason):
1. the RLDS rules (`transforms.rlds_rules.check_rlds`);
2. a finite return (`check_return`: `NON_FINITE_RETURN`, a `NonFiniteReturn`);
3. tokenization of its emitted steps and the fit of every timestep in a sequence
   (a `TokenizationError` or `SequencingError`: `tokenize_checked` in pass 2; in pass 1 the
   same errors from `TaskTokenizer.check`, which makes no tokens);
4. an episode id no other usable episode of its task has (`duplicate_rejects`:
   `DUPLICATE_EPISODE_ID`, every copy rejected; `DuplicateEpisodeId` under `--strict`).

Pass 1 applies 1-3 to every episode read in full (`episode_verdict`) and 4 to the returns
of the usable ones, so the expert return E and the threshold come only from episodes
that are written or dropped, never from rejects. Pass 2 applies 1 and 2 again (cheap), and
takes 3's and 4's rejects from pass 1 (`TaskVerdicts.rejects`, looked up by the episode's
file and record) instead of tokenizing episodes the filter drops; it tokenizes the kept
ones with `tokenize_checked` itself. Both passes read the same bytes with the same code,
so they reach the same verdict.

`TaskVerdicts` is pass 1's per-task result, the side input of pass 2's Filter and Sequence
stages: the task's `TaskThreshold` (None when no episode of it is usable) and the rejects
pass 2 reports where it meets their episodes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from transforms.episode import EpisodeKey, RawEpisode, Reject
from transforms.errors import TokenizationError
from transforms.rlds_rules import check_rlds
from transforms.sequence import SequencingError, check_starts_fit, check_timesteps_fit
from transforms.steps import emitted_steps
from transforms.types import TokenizedEpisode

if TYPE_CHECKING:
    from transforms.expert_filter import TaskThreshold

# --- Reason codes of the verdict (the rejects table's `reason`). ---
NON_FINITE_RETURN = "non_finite_return"  # the episode's return is inf or NaN
DUPLICATE_EPISODE_ID = "duplicate_episode_id"  # another episode of the task has the same id
REASONS = frozenset({NON_FINITE_RETURN, DUPLICATE_EPISODE_ID})
ID_FIELD = "episode_id"  # the `field` of a duplicate's reject: the id, whatever fields make it

Position = tuple[str, int]  # (source file, record index): where an episode was read


def position(key: EpisodeKey) -> Position:
    return (key.source_file, key.index_in_file)


class NonFiniteReturn(ValueError):
    """An episode whose return is inf or NaN: names file, record, task, episode, field, value."""

    reason = NON_FINITE_RETURN

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (NonFiniteReturn, (self.field, str(self)))


def check_return(key: EpisodeKey, value: float, *, field: str | None = None) -> float:
    """`value` as a float; a `NonFiniteReturn` when it is inf or NaN (`field`: where it came from)."""
    value = float(value)
    if not math.isfinite(value):
        raise NonFiniteReturn(
            field,
            f"{key.location()}, episode {key.episode_id!r}: the return (from {field!r}) is {value!r}; "
            "the expert filter needs a finite return",
        )
    return value


def tokenize_checked(
    raw: RawEpisode,
    tokenize: Callable[[EpisodeKey, Mapping[str, Any]], TokenizedEpisode],
    *,
    max_timestep_tokens: int | None,
) -> TokenizedEpisode:
    """The tokens of a validated episode's emitted steps, each timestep checked to fit in
    `max_timestep_tokens` (None: unchecked); raises TokenizationError or SequencingError."""
    episode = tokenize(raw.key, emitted_steps(raw))
    if max_timestep_tokens is not None:
        check_timesteps_fit(episode, max_timestep_tokens, raw.key.episode_id)
    return episode


def episode_verdict(
    raw: RawEpisode,
    *,
    return_fn: Callable[[RawEpisode], float],
    return_field: str | None,
    timestep_starts: Callable[[EpisodeKey, Mapping[str, Any]], np.ndarray],
    max_timestep_tokens: int | None,
) -> float:
    """Checks 1-3 of the module doc on one episode read in full; returns its (finite) return.

    `timestep_starts`: the tokenizer's check (`TaskTokenizer.check`): the errors of
    tokenizing the emitted steps, and their timesteps' starts. Raises the first check's
    error: RldsViolation, NonFiniteReturn, TokenizationError or SequencingError (each a
    ValueError naming file, record, episode and field)."""
    check_rlds(raw)
    value = check_return(raw.key, return_fn(raw), field=return_field)
    starts = timestep_starts(raw.key, emitted_steps(raw))
    if max_timestep_tokens is not None:
        check_starts_fit(starts, max_timestep_tokens, raw.key.episode_id)
    return value


def verdict_reject(key: EpisodeKey, error: ValueError) -> Reject:
    """The reject of an episode that fails a check; the detail names file, record and episode."""
    if isinstance(error, (TokenizationError, SequencingError)):
        detail = f"{key.location()}: {error}"
    else:
        detail = str(error)  # RldsViolation and NonFiniteReturn name the place themselves
    return Reject.of_episode(key, reason=error.reason, field=getattr(error, "field", None), detail=detail)


class DuplicateEpisodeId(ValueError):
    """Two usable episodes of one task share an id (`--strict`): names id, task and files."""


def _copies(keys: Sequence[EpisodeKey]) -> str:
    return ", ".join(f"file {k.source_file!r} (record {k.index_in_file})" for k in keys)


def duplicate_rejects(keys: Sequence[EpisodeKey], *, strict: bool = False) -> list[tuple[EpisodeKey, Reject]]:
    """(key, reject) of every copy of one episode id (`keys`: two or more, one task), in
    collection order, each reject naming its own file and record first, then the others';
    `strict`: a DuplicateEpisodeId instead."""
    copies = sorted(keys, key=EpisodeKey.sort_key)
    first = copies[0]
    if strict:
        raise DuplicateEpisodeId(
            f"episode id {first.episode_id!r} appears {len(copies)} times in task {first.task!r} "
            f"of dataset {first.dataset!r}: {_copies(copies)}"
        )
    rejects = []
    for key in copies:
        others = [k for k in copies if k != key]
        rejects.append((key, Reject.of_episode(
            key, reason=DUPLICATE_EPISODE_ID, field=ID_FIELD,
            detail=f"{key.location()}: episode id {key.episode_id!r} is also read from {_copies(others)}; "
                   "every copy is rejected",
        )))
    return rejects


@dataclasses.dataclass(frozen=True)
class TaskVerdicts:
    """Pass 1's verdicts of one task, for pass 2 (module doc).

    `expert`: the task's threshold over its usable episodes (None: none is usable).
    `rejects`: by (source file, record), the rejects pass 1 found after the RLDS rules and
    the return (tokenization, timestep fit, duplicate ids); pass 2 reports each where it
    reads the episode.
    """

    expert: TaskThreshold | None
    rejects: Mapping[Position, Reject] = dataclasses.field(default_factory=dict)

    @property
    def threshold(self) -> float:
        """The keep threshold (what the Sequence stage reads); -inf without a usable episode."""
        return -math.inf if self.expert is None else float(self.expert.threshold)

    def reject_of(self, key: EpisodeKey) -> Reject | None:
        return self.rejects.get(position(key))
