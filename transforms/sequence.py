"""Cut a tokenized episode into Gato sequences, with prompt conditioning (spec section 5).

Pure numpy; no Beam. One call handles one whole episode and returns a `SequenceBatch`,
the rows the writer turns into Parquet.

Invariants of the rows of a `SequenceBatch` (S rows of L tokens):
- timesteps are never split and appear in order: row s holds the episode's timesteps
  [t_s, t_{s+1}), with t_0 = 0 and the last row ending at the episode's last timestep;
- a row is `[prompt tokens, episode tokens, padding]`; `num_tokens[s]` counts prompt and
  episode tokens; padding (pad id, modality PAD, timestep -1, loss 0, local position 0)
  only follows them;
- prompt tokens: whole timesteps of another episode of the task, `is_prompt` True,
  `timestep` -1, loss 0, their own local positions;
- episode tokens keep their id, modality, local position and loss mask, and `timestep`
  is their index in the episode;
- the image patches of a row are its image tokens' patches, in token order.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

import numpy as np

from schemas.output import NO_TIMESTEP
from schemas.vocab import DEFAULT_SEQUENCE_LENGTH, GATO, Modality, VocabLayout
from transforms.prompts import (
    DEFAULT_PROMPT_FRACTION,
    PromptCandidate,
    PromptWindow,
    pick_window,
    wants_prompt,
)
from transforms.types import TokenizedEpisode

# Reason code of a timestep that does not fit in one sequence (rejects output).
TIMESTEP_TOO_LONG = "timestep_too_long"
_INT16_MAX = int(np.iinfo(np.int16).max)


class SequencingError(ValueError):
    """An episode that cannot be cut into sequences; names episode, timestep and size."""

    def __init__(self, reason: str, detail: str, *, episode: str, timestep: int, value: int) -> None:
        self.reason = reason
        self.detail = detail
        self.episode = episode
        self.timestep = timestep
        self.value = value
        super().__init__(
            f"episode {episode!r}, timestep {timestep}: {detail} (value {value}) [{reason}]"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor: keep the context when Beam pickles the error.
        return (_rebuild, (self.reason, self.detail, self.episode, self.timestep, self.value))


def _rebuild(reason: str, detail: str, episode: str, timestep: int, value: int) -> SequencingError:
    return SequencingError(reason, detail, episode=episode, timestep=timestep, value=value)


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    """Sequencing options. `prompt_budget` None means L // 4 tokens."""

    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    prompt_fraction: float = DEFAULT_PROMPT_FRACTION
    prompt_budget: int | None = None
    seed: int = 0
    layout: VocabLayout = GATO

    def __post_init__(self) -> None:
        if self.sequence_length < 1:
            raise ValueError(f"sequence length must be >= 1, got {self.sequence_length}")
        if not 0.0 <= self.prompt_fraction <= 1.0:
            raise ValueError(f"prompt fraction must be in [0, 1], got {self.prompt_fraction}")
        if self.prompt_budget is not None and not 0 <= self.prompt_budget < self.sequence_length:
            raise ValueError(
                f"prompt budget must be in [0, sequence length {self.sequence_length}), "
                f"got {self.prompt_budget}"
            )

    @property
    def budget(self) -> int:
        """Most tokens a prompt may take in one sequence."""
        if self.prompt_budget is not None:
            return self.prompt_budget
        return self.sequence_length // 4


@dataclasses.dataclass(frozen=True)
class SequenceBatch:
    """All sequences of one episode (module invariants). Arrays are [S, L] unless noted.

    Patches: row s's patches are `[row_patch_starts[s], row_patch_starts[s+1])`; patch i
    is `patch_pixels[patch_offsets[i]:patch_offsets[i+1]]` (16x16xC, HWC) at
    `patch_positions[i]` (row_lo, row_hi, col_lo, col_hi).
    """

    episode_id: str
    tokens: np.ndarray  # int32
    modality: np.ndarray  # int8
    loss_mask: np.ndarray  # bool
    local_positions: np.ndarray  # int16
    timestep: np.ndarray  # int32
    is_prompt: np.ndarray  # bool
    num_tokens: np.ndarray  # int32[S]
    sequence_index: np.ndarray  # int32[S]
    prompt_episode_id: tuple[str | None, ...]  # per row
    prompt_kind: tuple[str | None, ...]  # per row: END_WINDOW, UNIFORM_WINDOW or None
    patch_pixels: np.ndarray  # uint8, flat
    patch_offsets: np.ndarray  # int64[P+1]
    patch_positions: np.ndarray  # int16[P, 4]
    row_patch_starts: np.ndarray  # int64[S+1]
    prompts_unavailable: int  # rows that drew a prompt but had no eligible candidate
    # Vision-language rows (transforms/vl_sequence.py): each row's own id (its first unit's
    # record key) and the source keys of its units; None for episodes (every row is `episode_id`'s).
    row_episode_ids: tuple[str, ...] | None = None
    source_keys: tuple[tuple[str, ...], ...] | None = None

    @property
    def num_sequences(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def num_prompted(self) -> int:
        return sum(p is not None for p in self.prompt_episode_id)

    @property
    def num_unprompted(self) -> int:
        return self.num_sequences - self.num_prompted

    @property
    def total_tokens(self) -> int:
        """Tokens before padding, prompts included."""
        return int(self.num_tokens.sum())


def check_timesteps_fit(episode: TokenizedEpisode, length: int, episode_id: str) -> np.ndarray:
    """The episode's timestep starts; a timestep of more than `length` tokens is a SequencingError."""
    return check_starts_fit(episode.timestep_starts, length, episode_id)


def check_starts_fit(timestep_starts: np.ndarray, length: int, episode_id: str) -> np.ndarray:
    """`check_timesteps_fit` given the timestep starts alone (int64[T+1])."""
    starts = np.asarray(timestep_starts, dtype=np.int64)
    sizes = np.diff(starts)
    too_long = np.flatnonzero(sizes > length)
    if too_long.size:
        t = int(too_long[0])
        raise SequencingError(
            TIMESTEP_TOO_LONG,
            f"the timestep has more tokens than the sequence length {length}; "
            "raise --sequence_length or shrink the observation (e.g. image size)",
            episode=episode_id,
            timestep=t,
            value=int(sizes[t]),
        )
    return starts


def _plan(
    starts: np.ndarray,
    *,
    config: SequenceConfig,
    task: str,
    episode_id: str,
    eligible: Sequence[PromptCandidate],
) -> tuple[list[tuple[int, int, PromptWindow | None]], int]:
    """Rows as (first timestep, stop timestep, prompt window), and the unavailable count.

    The cut of row s depends on its prompt's size, so rows are planned one after the
    other; each cut is a binary search over the timestep starts.
    """
    length = config.sequence_length
    num_timesteps = starts.shape[0] - 1
    # A list and `bisect`: ~5x cheaper than numpy's searchsorted on one value at a time.
    points = starts.tolist()
    rows: list[tuple[int, int, PromptWindow | None]] = []
    unavailable = 0
    t = 0
    while t < num_timesteps:
        s = len(rows)
        window: PromptWindow | None = None
        if config.prompt_fraction > 0 and wants_prompt(
            seed=config.seed, task=task, episode_id=episode_id, sequence_index=s,
            fraction=config.prompt_fraction,
        ):
            window = pick_window(
                eligible, seed=config.seed, task=task, episode_id=episode_id, sequence_index=s
            )
            unavailable += window is None
            if window is not None and window.num_tokens > config.budget:
                window = None  # built under another budget: never exceed this one
        room = length - (window.num_tokens if window is not None else 0)
        stop = bisect.bisect_right(points, points[t] + room) - 1
        if stop <= t:
            # The prompt leaves no room for the next timestep: this row goes without.
            window = None
            stop = bisect.bisect_right(points, points[t] + length) - 1
        rows.append((t, min(stop, num_timesteps), window))
        t = rows[-1][1]
    return rows, unavailable


@dataclasses.dataclass(frozen=True)
class _RowBuffers:
    """The [S, L] arrays of a batch being filled (all padding until a part is put) and the
    patches of the parts, in the order they were put (token order within each row)."""

    tokens: np.ndarray
    modality: np.ndarray
    loss_mask: np.ndarray
    local_positions: np.ndarray
    timestep: np.ndarray
    is_prompt: np.ndarray
    num_tokens: np.ndarray  # [S]
    row_patches: np.ndarray  # [S + 1]
    pixel_chunks: list[np.ndarray] = dataclasses.field(default_factory=list)
    size_chunks: list[np.ndarray] = dataclasses.field(default_factory=list)
    position_chunks: list[np.ndarray] = dataclasses.field(default_factory=list)

    @classmethod
    def padding(cls, num_rows: int, *, length: int, layout: VocabLayout) -> _RowBuffers:
        return cls(
            tokens=np.full((num_rows, length), layout.pad, dtype=np.int32),
            modality=np.full((num_rows, length), int(Modality.PAD), dtype=np.int8),
            loss_mask=np.zeros((num_rows, length), dtype=bool),
            local_positions=np.zeros((num_rows, length), dtype=np.int16),
            timestep=np.full((num_rows, length), NO_TIMESTEP, dtype=np.int32),
            is_prompt=np.zeros((num_rows, length), dtype=bool),
            num_tokens=np.zeros(num_rows, dtype=np.int32),
            row_patches=np.zeros(num_rows + 1, dtype=np.int64),
        )

    def put(self, s: int, *, at: int, part: TokenizedEpisode, prompt: bool, first_timestep: int) -> int:
        """Writes `part` into row `s` from column `at`; returns the column after it."""
        end = at + part.num_tokens
        self.tokens[s, at:end] = part.tokens
        self.modality[s, at:end] = part.modality
        self.local_positions[s, at:end] = part.local_positions
        if prompt:
            self.is_prompt[s, at:end] = True  # loss stays 0, timestep stays -1
        else:
            self.loss_mask[s, at:end] = part.loss_mask
            self.timestep[s, at:end] = part.timestep + first_timestep
        self.pixel_chunks.append(part.patch_pixels)
        self.size_chunks.append(np.diff(part.patch_offsets))
        self.position_chunks.append(part.patch_positions)
        return end

    def fill(self, episode: TokenizedEpisode, *, rows: Sequence[tuple[int, int, PromptWindow | None]]) -> None:
        """Row s gets its prompt window's tokens, then the episode's timesteps [t0, t1).

        The rows cut the episode's timesteps in order (`_plan`), so row s takes one
        contiguous slice of each of the episode's columns, from column `at_s` (after its
        prompt), and the episode's patches stay in their order, split only where a
        prompt's patches come between.
        """
        num_rows, length = self.tokens.shape
        if num_rows == 0:
            return
        t0 = np.fromiter((row[0] for row in rows), np.int64, num_rows)
        t1 = np.fromiter((row[1] for row in rows), np.int64, num_rows)
        at = np.zeros(num_rows, dtype=np.int64)  # where the episode's part of each row starts
        prompt_patches = np.zeros(num_rows, dtype=np.int64)
        patch_starts, done = episode.patch_starts, 0
        for s, (_, _, window) in enumerate(rows):
            if window is None:
                continue
            first_patch = int(patch_starts[t0[s]])
            self._put_patches(episode, done, first_patch)  # the episode's rows before this one
            at[s] = self.put(s, at=0, part=window.tokens, prompt=True, first_timestep=0)
            prompt_patches[s] = window.tokens.patch_positions.shape[0]
            done = first_patch
        self._put_patches(episode, done, int(patch_starts[t1[-1]]))

        starts = episode.timestep_starts
        first, stop = starts[t0], starts[t1]
        counts = stop - first
        # One slice per (row, column): ~3x cheaper than scattering through an index of
        # every token (which costs more than the copy itself at ~35 rows per episode).
        columns = [
            (self.tokens, episode.tokens),
            (self.modality, episode.modality),
            (self.local_positions, episode.local_positions),
            (self.loss_mask, episode.loss_mask),
            (self.timestep, episode.timestep),  # the episode's own indices
        ]
        for s, (a, f, e) in enumerate(zip(at.tolist(), first.tolist(), stop.tolist())):
            for out, values in columns:
                out[s, a : a + e - f] = values[f:e]
        self.num_tokens[:] = at + counts
        np.cumsum(prompt_patches + patch_starts[t1] - patch_starts[t0], out=self.row_patches[1:])

    def _put_patches(self, episode: TokenizedEpisode, start: int, stop: int) -> None:
        """The episode's patches [start, stop), after those put so far."""
        offsets = episode.patch_offsets
        self.pixel_chunks.append(episode.patch_pixels[offsets[start] : offsets[stop]])
        self.size_chunks.append(np.diff(offsets[start : stop + 1]))
        self.position_chunks.append(episode.patch_positions[start:stop])

    def batch(
        self, episode_id: str, *, rows: Sequence[tuple[int, int, PromptWindow | None]], unavailable: int
    ) -> SequenceBatch:
        """The filled rows as a `SequenceBatch`, the patches concatenated in put order."""
        sizes = np.concatenate(self.size_chunks) if self.size_chunks else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return SequenceBatch(
            episode_id=episode_id,
            tokens=self.tokens,
            modality=self.modality,
            loss_mask=self.loss_mask,
            local_positions=self.local_positions,
            timestep=self.timestep,
            is_prompt=self.is_prompt,
            num_tokens=self.num_tokens,
            sequence_index=np.arange(len(rows), dtype=np.int32),
            prompt_episode_id=tuple(None if w is None else w.episode_id for _, _, w in rows),
            prompt_kind=tuple(None if w is None else w.kind for _, _, w in rows),
            patch_pixels=(
                np.concatenate(self.pixel_chunks).astype(np.uint8, copy=False)
                if self.pixel_chunks
                else np.zeros(0, dtype=np.uint8)
            ),
            patch_offsets=offsets,
            patch_positions=(
                np.concatenate(self.position_chunks).astype(np.int16, copy=False).reshape(-1, 4)
                if self.position_chunks
                else np.zeros((0, 4), dtype=np.int16)
            ),
            row_patch_starts=self.row_patches,
            prompts_unavailable=unavailable,
        )


def sequence_episode(
    episode: TokenizedEpisode,
    *,
    episode_id: str,
    task: str,
    config: SequenceConfig,
    prompts: Sequence[PromptCandidate] = (),
) -> SequenceBatch:
    """Cut `episode` into sequences (module invariants).

    `prompts` are the task's eligible candidates (pool order); the episode itself is
    never used as its own prompt. A timestep longer than L raises `SequencingError`.
    """
    starts = check_timesteps_fit(episode, config.sequence_length, episode_id)
    if episode.local_positions.size and int(episode.local_positions.max()) > _INT16_MAX:
        raise ValueError(f"episode {episode_id!r}: local positions exceed int16")
    eligible = tuple(c for c in prompts if c.episode_id != episode_id)
    rows, unavailable = _plan(starts, config=config, task=task, episode_id=episode_id, eligible=eligible)
    buffers = _RowBuffers.padding(len(rows), length=config.sequence_length, layout=config.layout)
    buffers.fill(episode, rows=rows)
    return buffers.batch(episode_id, rows=rows, unavailable=unavailable)
