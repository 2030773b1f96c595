"""The Tokenize stage: a kept RawEpisode -> (EpisodeKey, TokenizedEpisode).

It wraps `transforms.task_tokenizer.TaskTokenizer` (the task's field specs, the
vocabulary layout and the SentencePiece model, opened once per worker in `setup()`).
An episode that does not tokenize, or has a timestep longer than the sequence, is a
`Reject` here, before it counts as kept; every tokenized one is also reported as a
`KeptEpisode` (tagged `kept`) for the statistics. In the job, pass 1 gave every episode
the same check (`transforms.verdict.tokenize_checked`) and the Filter rejected those that
fail, so the episodes that reach this stage tokenize; with `verified=True` (the job's pass 2)
their PNG frames are decoded without checking their integrity again
(`transforms.images.decode_pngs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam

from pipeline.coders import EPISODE_TOKENS
from pipeline.counters import TaskCounters
from pipeline.rejects import REJECTS_TAG, reject_or_raise
from transforms.episode import EpisodeKey, KeptEpisode, RawEpisode, Reject
from transforms.errors import TokenizationError
from transforms.sequence import SequencingError
from transforms.task_tokenizer import TaskTokenizer, TokenizerConfig
from transforms.verdict import tokenize_checked

KEPT_TAG = "kept"
COUNTER_NAMESPACE = "gato.tokenize"
PROGRESS_SECONDS = 5.0  # how often a worker logs its throughput
log = logging.getLogger(__name__)


def tokenization_reject(key: EpisodeKey, error: TokenizationError | SequencingError) -> Reject:
    """The reject of an episode that does not tokenize (or has a timestep longer than L)."""
    return Reject.of_episode(
        key, reason=error.reason, field=getattr(error, "field", None), detail=f"{key.location()}: {error}"
    )


class TokenizeEpisodesFn(beam.DoFn):
    """RawEpisode -> (EpisodeKey, TokenizedEpisode); tagged `kept` KeptEpisode, `rejects` Reject.

    `return_fn` gives the episode's return for the statistics. With `strict`, a bad value
    raises a ValueError naming file, record, episode, field, timestep and value.
    Each worker logs its episodes/s and tokens/s every PROGRESS_SECONDS. `verified`: every
    episode that reaches the stage passed pass 1's verdict on the same bytes (module doc).
    """

    def __init__(
        self,
        config: TokenizerConfig,
        *,
        return_fn: Callable[[RawEpisode], float],
        strict: bool = False,
        verified: bool = False,
    ) -> None:
        self._config = config
        self._return_fn = return_fn
        self._strict = strict
        self._verified = verified

    def setup(self) -> None:
        tokenizer = TaskTokenizer(self._config)
        self._tokenize = tokenizer.verified if self._verified else tokenizer
        self._counters = TaskCounters(COUNTER_NAMESPACE)
        self._started = self._last_log = time.monotonic()
        self._episodes = self._tokens = 0

    def process(self, raw: RawEpisode) -> Iterator[Any]:
        key = raw.key
        try:
            # The same check as pass 1's verdict (transforms/verdict.py), so it passes here.
            episode = tokenize_checked(raw, self._tokenize, max_timestep_tokens=self._config.max_timestep_tokens)
        except (TokenizationError, SequencingError) as error:
            reject = tokenization_reject(key, error)
            yield reject_or_raise(reject, strict=self._strict, counters=self._counters, cause=error)
            return
        self._counters.inc(key.task_key, "episodes")
        self._counters.inc(key.task_key, "tokens", episode.num_tokens)
        yield beam.pvalue.TaggedOutput(
            KEPT_TAG,
            KeptEpisode(
                key=key,
                value=self._return_fn(raw),
                timesteps=episode.num_timesteps,
                tokens=episode.num_tokens,
            ),
        )
        yield key, episode
        self._progress(episode.num_tokens)

    def _progress(self, tokens: int) -> None:
        self._episodes += 1
        self._tokens += tokens
        now = time.monotonic()
        if now - self._last_log >= PROGRESS_SECONDS:
            elapsed = now - self._started
            log.info(
                "tokenized %d episodes, %d tokens: %.1f episodes/s, %.0f tokens/s (this worker)",
                self._episodes, self._tokens, self._episodes / elapsed, self._tokens / elapsed,
            )
            self._last_log = now


class TokenizeEpisodes(beam.PTransform):
    """RawEpisode -> outputs main (EpisodeKey, TokenizedEpisode), `kept`, `rejects`."""

    def __init__(
        self,
        config: TokenizerConfig,
        *,
        return_fn: Callable[[RawEpisode], float],
        strict: bool = False,
        verified: bool = False,
    ) -> None:
        super().__init__()
        self._fn = TokenizeEpisodesFn(config, return_fn=return_fn, strict=strict, verified=verified)

    def expand(self, episodes: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        # Typed, so Beam sizes the main output's elements from their arrays (pipeline/coders.py).
        return episodes | "TokenizeEpisode" >> beam.ParDo(self._fn).with_output_types(EPISODE_TOKENS).with_outputs(
            KEPT_TAG, REJECTS_TAG, main="tokenized"
        )
