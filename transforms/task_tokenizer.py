"""Tokenizing an episode of a planned task: `tokenize_episode` with what only the job knows.

`TokenizerConfig` (frozen, picklable, no open resources) holds each task's field specs
(from the plan), the vocabulary layout, the SentencePiece model's path, the local
position table, and the longest timestep a sequence can hold (`max_timestep_tokens`:
the Tokenize stage rejects a longer one before the episode counts as kept, so it is never
counted twice). `TaskTokenizer` is a config with its resources open (the model, loaded
once: build it in `DoFn.setup()`), called as `tokenizer(key, steps)`; a task the plan
does not know is a ValueError. Pass 2's Tokenize stage (`pipeline/tokenize_episodes.py`,
through `verified`) and pass 1's prompt windows (`pipeline/prompt_pools.py`) both use it, so
prompts are tokenized exactly as episodes are; pass 1's verdict uses `check`, which raises
the same errors and makes no tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from schemas.fields import FieldSpec
from schemas.vocab import LOCAL_POSITION_TABLE, get_layout
from transforms.episode import EpisodeKey
from transforms.text import SentencePieceTokenizer
from transforms.tokenize import checked_timestep_starts, tokenize_episode
from transforms.types import TokenizedEpisode


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """What tokenizing an episode of any planned task needs (picklable, no open resources)."""

    task_fields: Mapping[str, Mapping[str, FieldSpec]]  # task -> field path -> spec
    layout: str = "gato"
    sentencepiece_model: str | None = None  # any fsspec path; needed iff a field is text
    local_position_table: int = LOCAL_POSITION_TABLE
    # Longest timestep a sequence can hold (the sequence length): a longer one is
    # rejected here, before the episode counts as kept, so it is never counted twice.
    max_timestep_tokens: int | None = None


class TaskTokenizer:
    """A `TokenizerConfig` with its resources opened (the SentencePiece model)."""

    def __init__(self, config: TokenizerConfig) -> None:
        self.config = config
        self.layout = get_layout(config.layout)
        self.text = (
            SentencePieceTokenizer.from_path(config.sentencepiece_model)
            if config.sentencepiece_model
            else None
        )

    def specs(self, task: str) -> Mapping[str, FieldSpec]:
        try:
            return self.config.task_fields[task]
        except KeyError:
            raise ValueError(
                f"task {task!r} has no field specs in the plan; planned: "
                f"{sorted(self.config.task_fields)}"
            ) from None

    def __call__(self, key: EpisodeKey, steps: Mapping[str, Any], *, verified: bool = False) -> TokenizedEpisode:
        """`verified`: as `tokenize_episode`'s (pass 2 decodes frames pass 1's `check` passed)."""
        return tokenize_episode(steps, self.specs(key.task), verified=verified, **self._settings(key))

    def check(self, key: EpisodeKey, steps: Mapping[str, Any]) -> np.ndarray:
        """The verdict's check: every error `__call__` raises, and the timestep starts of its
        tokens, without making them (`checked_timestep_starts`)."""
        return checked_timestep_starts(steps, self.specs(key.task), **self._settings(key))

    def verified(self, key: EpisodeKey, steps: Mapping[str, Any]) -> TokenizedEpisode:
        """`__call__` for an episode whose `check` passed on the same bytes (pass 2)."""
        return self(key, steps, verified=True)

    def _settings(self, key: EpisodeKey) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "text": self.text,
            "local_position_table": self.config.local_position_table,
            "episode": key.episode_id,
        }
