"""Prompt material and prompt choices (spec section 5). Pure numpy; no Beam.

A prompt is a window of whole timesteps from a *different* episode of the same task,
placed at the start of a sequence. Material comes from a bounded per-task pool built in
the job's first pass: at most `capacity` candidate episodes (the best returns of the
task), each contributing its end window and a few uniformly placed windows, already
tokenized. Every choice comes from `stable_hash(seed, task, episode, sequence, ...)`.

Invariants:
- a `PromptWindow` holds whole timesteps, renumbered from 0, with at most `budget`
  tokens (the budget it was built with);
- a `PromptPool` holds at most `capacity` candidates, sorted by `PromptCandidate.sort_key`
  (return descending, then a stable hash), one per episode id; merging pools is
  associative and commutative.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from transforms.hashing import HashPrefix, stable_hash, stable_randrange
from transforms.types import TokenizedEpisode

END_WINDOW = "end"  # the source episode's last timesteps
UNIFORM_WINDOW = "uniform"  # a window placed uniformly (by stable hash) in the episode

DEFAULT_PROMPT_FRACTION = 0.25
DEFAULT_POOL_SIZE = 16
DEFAULT_NUM_UNIFORM_WINDOWS = 4

# Labels mixed into the stable hashes, so that each decision draws independent bits.
_H_WANTS = "prompt"
_H_CANDIDATE = "prompt_candidate"
_H_KIND = "prompt_kind"
_H_WINDOW = "prompt_window"
_H_PLACE = "prompt_window_start"
_H_RANK = "prompt_rank"


def slice_timesteps(episode: TokenizedEpisode, start: int, stop: int) -> TokenizedEpisode:
    """Timesteps [start, stop) of `episode` as an episode of their own (timesteps from 0)."""
    if not 0 <= start <= stop <= episode.num_timesteps:
        raise ValueError(
            f"timestep slice [{start}, {stop}) outside an episode of "
            f"{episode.num_timesteps} timesteps"
        )
    ts = episode.timestep_starts
    a, b = int(ts[start]), int(ts[stop])
    pa, pb = int(episode.patch_starts[start]), int(episode.patch_starts[stop])
    offsets = episode.patch_offsets
    return TokenizedEpisode(
        tokens=episode.tokens[a:b],
        modality=episode.modality[a:b],
        local_positions=episode.local_positions[a:b],
        loss_mask=episode.loss_mask[a:b],
        timestep=episode.timestep[a:b] - start,
        timestep_starts=ts[start : stop + 1] - a,
        patch_pixels=episode.patch_pixels[offsets[pa] : offsets[pb]],
        patch_offsets=offsets[pa : pb + 1] - offsets[pa],
        patch_positions=episode.patch_positions[pa:pb],
        patch_starts=episode.patch_starts[start : stop + 1] - pa,
        field_paths=episode.field_paths,
        field_shapes=episode.field_shapes,
        field_lengths=None if episode.field_lengths is None else episode.field_lengths[start:stop],
    )


@dataclasses.dataclass(frozen=True)
class PromptWindow:
    """Whole timesteps of one source episode, tokenized; `start` is its first timestep there."""

    episode_id: str
    kind: str  # END_WINDOW or UNIFORM_WINDOW
    start: int
    tokens: TokenizedEpisode

    @property
    def num_tokens(self) -> int:
        return self.tokens.num_tokens

    @property
    def num_timesteps(self) -> int:
        return self.tokens.num_timesteps


def _fit(window: TokenizedEpisode, budget: int, *, keep_end: bool) -> tuple[int, int] | None:
    """The [lo, hi) timesteps of `window` to keep so that it holds at most `budget` tokens.

    Whole timesteps are trimmed from the front (end windows) or the back (uniform ones);
    None when not even one timestep fits.
    """
    starts = np.asarray(window.timestep_starts, dtype=np.int64)
    count = window.num_timesteps
    if keep_end:
        lo = int(np.searchsorted(starts, starts[-1] - budget, side="left"))
        return (lo, count) if lo < count else None
    hi = int(np.searchsorted(starts, budget, side="right")) - 1
    return (0, hi) if hi > 0 else None


def prompt_windows(
    num_timesteps: int,
    tokenize_slice: Callable[[int, int], TokenizedEpisode],
    *,
    budget: int,
    seed: int,
    task: str,
    episode_id: str,
    num_uniform: int = DEFAULT_NUM_UNIFORM_WINDOWS,
) -> list[PromptWindow]:
    """An episode's prompt windows: its end window, then `num_uniform` uniform ones.

    `tokenize_slice(start, stop)` tokenizes timesteps [start, stop). One timestep is
    tokenized first to learn the tokens per timestep; each window then spans as many
    timesteps as that suggests, trimmed by whole timesteps if it came out over `budget`.
    A window in which not even one timestep fits is left out.
    """
    if budget < 1 or num_timesteps < 1:
        return []

    def tokenized(start: int, stop: int) -> TokenizedEpisode:
        result = tokenize_slice(start, stop)
        if result.num_timesteps != stop - start:
            raise ValueError(
                f"episode {episode_id!r}: tokenize_slice({start}, {stop}) returned "
                f"{result.num_timesteps} timesteps, expected {stop - start}"
            )
        return result

    per_timestep = max(1, tokenized(0, 1).num_tokens)
    span = max(1, min(num_timesteps, budget // per_timestep))
    places = [(END_WINDOW, num_timesteps - span)] + [
        (UNIFORM_WINDOW, stable_randrange(num_timesteps - span + 1, seed, task, episode_id, _H_PLACE, i))
        for i in range(num_uniform)
    ]
    windows: list[PromptWindow] = []
    for kind, start in places:
        raw = tokenized(start, start + span)
        kept = _fit(raw, budget, keep_end=kind == END_WINDOW)
        if kept is None:
            continue
        lo, hi = kept
        windows.append(
            PromptWindow(episode_id, kind, start + lo, slice_timesteps(raw, lo, hi))
        )
    return windows


@dataclasses.dataclass(frozen=True)
class PromptCandidate:
    """One episode offered as prompt material, with its return and windows."""

    episode_id: str
    episode_return: float
    rank: int  # stable hash: breaks ties between equal returns deterministically
    windows: tuple[PromptWindow, ...]

    def sort_key(self) -> tuple[float, int, str]:
        return (-self.episode_return, self.rank, self.episode_id)


def prompt_candidate(
    episode_id: str,
    episode_return: float,
    windows: Iterable[PromptWindow],
    *,
    seed: int,
    task: str,
) -> PromptCandidate:
    """A candidate whose tie-break rank comes from the stable hash of (seed, task, episode)."""
    return PromptCandidate(
        episode_id=episode_id,
        episode_return=float(episode_return),
        rank=stable_hash(seed, task, episode_id, _H_RANK),
        windows=tuple(windows),
    )


def candidate_sort_key(episode_id: str, episode_return: float, *, seed: int, task: str) -> tuple[float, int, str]:
    """The pool order (`PromptCandidate.sort_key`) of an episode, known before its windows are."""
    return prompt_candidate(episode_id, episode_return, (), seed=seed, task=task).sort_key()


def top_candidates(candidates: Iterable[PromptCandidate], capacity: int) -> tuple[PromptCandidate, ...]:
    """The best `capacity` candidates (one per episode id), in pool order."""
    unique = {c.episode_id: c for c in candidates if c.windows}
    return tuple(sorted(unique.values(), key=PromptCandidate.sort_key)[:capacity])


@dataclasses.dataclass(frozen=True)
class PromptPool:
    """A task's prompt material: at most `capacity` candidates, best first."""

    candidates: tuple[PromptCandidate, ...] = ()
    capacity: int = DEFAULT_POOL_SIZE

    def __post_init__(self) -> None:
        if self.capacity < 0:
            raise ValueError(f"prompt pool capacity must be >= 0, got {self.capacity}")

    def merged(self, other: Iterable[PromptCandidate]) -> PromptPool:
        return PromptPool(top_candidates((*self.candidates, *other), self.capacity), self.capacity)

    def eligible(self, *, threshold: float, exclude: str) -> tuple[PromptCandidate, ...]:
        """Candidates usable for episode `exclude`: return >= threshold, another episode."""
        return tuple(
            c
            for c in self.candidates
            if c.episode_return >= threshold and c.episode_id != exclude
        )


@functools.lru_cache(maxsize=64)
def _episode_hash(seed: int, task: str, episode_id: str) -> HashPrefix:
    """The hash prefix of one episode's rows: sha256 of (seed, task, episode) fed once, not
    once per row (the same values as `stable_hash(seed, task, episode_id, ...)`)."""
    return HashPrefix(seed, task, episode_id)


def wants_prompt(*, seed: int, task: str, episode_id: str, sequence_index: int, fraction: float) -> bool:
    """Whether sequence `sequence_index` of the episode starts with a prompt."""
    return _episode_hash(seed, task, episode_id).uniform(sequence_index, _H_WANTS) < fraction


def pick_window(
    eligible: Sequence[PromptCandidate],
    *,
    seed: int,
    task: str,
    episode_id: str,
    sequence_index: int,
) -> PromptWindow | None:
    """The prompt window of a sequence: a candidate, then (half/half) its end or a uniform window.

    When the drawn kind is missing from the candidate (its windows did not fit), the
    other kind is used; None when there is no eligible candidate.
    """
    if not eligible:
        return None
    row = _episode_hash(seed, task, episode_id)
    candidate = eligible[row.randrange(len(eligible), sequence_index, _H_CANDIDATE)]
    kind = END_WINDOW if row.uniform(sequence_index, _H_KIND) < 0.5 else UNIFORM_WINDOW
    of_kind = [w for w in candidate.windows if w.kind == kind] or list(candidate.windows)
    return of_kind[row.randrange(len(of_kind), sequence_index, _H_WINDOW)]
