"""The tokenized form of an episode: the contract between tokenization and sequencing."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TokenizedEpisode:
    """All tokens of an episode's emitted timesteps, laid out per spec section 3.

    Invariants (N tokens, T timesteps, P image patches):
    - `tokens` int32[N], `modality` int8[N], `local_positions` int32[N],
      `loss_mask` bool[N], `timestep` int32[N] (0..T-1, non-decreasing);
    - `timestep_starts` int64[T+1]: tokens of timestep t are
      `[timestep_starts[t], timestep_starts[t+1])`; `timestep_starts[-1] == N`;
    - patches are in token order, one per image token (modality IMAGE):
      `patch_pixels` uint8 flat buffer, patch i is
      `patch_pixels[patch_offsets[i]:patch_offsets[i+1]]`, a 16x16xC block in HWC
      order (C = size / 256); `patch_offsets` int64[P+1];
      `patch_positions` int16[P, 4] = (row_lo, row_hi, col_lo, col_hi), each in
      [0, 127] (spec section 2's quantized patch intervals);
    - `patch_starts` int64[T+1]: patches of timestep t are
      `[patch_starts[t], patch_starts[t+1])`.

    What the decoder needs to split a timestep back into fields (F fields, observation
    paths sorted, then action paths sorted; empty for episodes built elsewhere):
    - `field_paths` tuple[str] of length F, in token order;
    - `field_shapes`: per field, the per-timestep shape as tokenized (images: the
      padded or resized (H, W, C); text: ());
    - `field_lengths` int32[T, F]: tokens of field f at timestep t (constant over t
      except for text). Timestep t is: observation fields, 1 separator, action fields.
    """

    tokens: np.ndarray
    modality: np.ndarray
    local_positions: np.ndarray
    loss_mask: np.ndarray
    timestep: np.ndarray
    timestep_starts: np.ndarray
    patch_pixels: np.ndarray
    patch_offsets: np.ndarray
    patch_positions: np.ndarray
    patch_starts: np.ndarray
    field_paths: tuple[str, ...] = ()
    field_shapes: tuple[tuple[int, ...], ...] = ()
    field_lengths: np.ndarray | None = None

    @property
    def num_timesteps(self) -> int:
        return int(self.timestep_starts.shape[0] - 1)

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])
