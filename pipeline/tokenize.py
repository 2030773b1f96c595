"""The tokenize stage: a kept RawEpisode -> (EpisodeKey, TokenizedEpisode), and pass 1's
prompt candidates (a few tokenized windows per episode).

Both wrap `transforms.tokenize.tokenize_episode` with what only the job knows: the
task's field specs (from the plan), the vocabulary layout, and the SentencePiece model,
which is loaded once per worker in `setup()`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import apache_beam as beam

from pipeline.episode import EpisodeKey, KeptEpisode, RawEpisode, Reject, TaskKey
from pipeline.plan import WorkItem
from pipeline.read import ShardReaders, read_shard
from pipeline.sequence import CandidateSelection, prompt_candidate_for
from pipeline.validate import RldsViolation, check_rlds, emitted_steps, num_emitted_steps
from schemas.datasets import DatasetSpec
from schemas.fields import FieldSpec
from schemas.vocab import LOCAL_POSITION_TABLE, get_layout
from transforms.errors import TokenizationError
from transforms.prompts import PromptCandidate
from transforms.sequence import SequenceConfig, SequencingError, check_timesteps_fit
from transforms.text import SentencePieceTokenizer
from transforms.tokenize import tokenize_episode
from transforms.types import TokenizedEpisode

KEPT_TAG = "kept"
REJECTS_TAG = "rejects"
COUNTER_NAMESPACE = "gato.tokenize"
PROGRESS_SECONDS = 5.0  # how often a worker logs its throughput

log = logging.getLogger(__name__)


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


class _Tokenizer:
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

    def __call__(self, key: EpisodeKey, steps: Mapping[str, Any]) -> TokenizedEpisode:
        return tokenize_episode(
            steps,
            self.specs(key.task),
            layout=self.layout,
            text=self.text,
            local_position_table=self.config.local_position_table,
            episode=key.episode_id,
        )


def slice_steps(steps: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Timesteps [start, stop) of a nested dict of arrays with a leading time axis (views)."""
    return {
        k: slice_steps(v, start, stop) if isinstance(v, Mapping) else v[start:stop]
        for k, v in steps.items()
    }


def _where(key: EpisodeKey) -> str:
    return f"file {key.source_file!r} (record {key.index_in_file}), task {key.task!r}"


def tokenization_reject(key: EpisodeKey, error: TokenizationError | SequencingError) -> Reject:
    return Reject(
        dataset=key.dataset,
        task=key.task,
        episode_id=key.episode_id,
        source_file=key.source_file,
        reason=error.reason,
        field=getattr(error, "field", None),
        detail=f"{_where(key)}: {error}",
    )


class TokenizeEpisodesFn(beam.DoFn):
    """RawEpisode -> (EpisodeKey, TokenizedEpisode); tagged `kept` KeptEpisode, `rejects` Reject.

    `return_fn` gives the episode's return for the statistics. With `strict`, a bad value
    raises a ValueError naming file, record, episode, field, timestep and value.
    Each worker logs its episodes/s and tokens/s every PROGRESS_SECONDS.
    """

    def __init__(
        self, config: TokenizerConfig, *, return_fn: Callable[[RawEpisode], float], strict: bool = False
    ) -> None:
        self._config = config
        self._return_fn = return_fn
        self._strict = strict

    def setup(self) -> None:
        self._tokenizer = _Tokenizer(self._config)
        self._counters: dict[tuple[TaskKey, str], Any] = {}
        self._started = self._last_log = time.monotonic()
        self._episodes = self._tokens = 0

    def _count(self, task: TaskKey, what: str, n: int = 1) -> None:
        counter = self._counters.get((task, what))
        if counter is None:
            counter = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, f"{task[0]}/{task[1]}/{what}")
            self._counters[(task, what)] = counter
        counter.inc(n)

    def process(self, raw: RawEpisode) -> Iterator[Any]:
        key = raw.key
        try:
            episode = self._tokenizer(key, emitted_steps(raw))
            if self._config.max_timestep_tokens is not None:
                check_timesteps_fit(episode, self._config.max_timestep_tokens, key.episode_id)
        except (TokenizationError, SequencingError) as error:
            if self._strict:
                raise ValueError(f"{_where(key)}: {error}") from error
            self._count(key.task_key, "rejected")
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, tokenization_reject(key, error))
            return
        self._count(key.task_key, "episodes")
        self._count(key.task_key, "tokens", episode.num_tokens)
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
        self, config: TokenizerConfig, *, return_fn: Callable[[RawEpisode], float], strict: bool = False
    ) -> None:
        super().__init__()
        self._fn = TokenizeEpisodesFn(config, return_fn=return_fn, strict=strict)

    def expand(self, episodes: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return episodes | "TokenizeEpisode" >> beam.ParDo(self._fn).with_outputs(
            KEPT_TAG, REJECTS_TAG, main="tokenized"
        )


class PromptCandidatesFn(beam.DoFn):
    """Pass 1: RawEpisode -> (TaskKey, PromptCandidate), tokenizing only its prompt windows.

    An episode whose windows fail to tokenize offers no prompt material; it is not lost:
    pass 2 tokenizes it in full and rejects it with the reason (counted here too).
    """

    def __init__(
        self,
        config: TokenizerConfig,
        *,
        sequence: SequenceConfig,
        return_fn: Callable[[RawEpisode], float],
    ) -> None:
        self._config = config
        self._sequence = sequence
        self._return_fn = return_fn

    def setup(self) -> None:
        self._tokenizer = _Tokenizer(self._config)

    def process(self, raw: RawEpisode) -> Iterator[tuple[TaskKey, PromptCandidate]]:
        return self._candidate(raw)

    def _candidate(self, raw: RawEpisode) -> Iterator[tuple[TaskKey, PromptCandidate]]:
        steps = emitted_steps(raw)
        try:
            yield prompt_candidate_for(
                raw.key,
                self._return_fn(raw),
                num_emitted_steps(raw),
                lambda start, stop: self._tokenizer(raw.key, slice_steps(steps, start, stop)),
                config=self._sequence,
            )
        except TokenizationError:
            beam.metrics.Metrics.counter(
                COUNTER_NAMESPACE, f"{raw.key.dataset}/{raw.key.task}/prompt_candidate_unusable"
            ).inc()


class PromptWindowsFn(PromptCandidatesFn):
    """Pass 1: WorkItem -> (TaskKey, PromptCandidate) for the chosen episodes of its shard.

    Side input `selections` {TaskKey: CandidateSelection}. By default only the chosen
    records are decoded (a shard with none is not opened); with `rest=True` (the fallback
    for tasks where a chosen episode gave no candidate) every record except the chosen
    ones. Records are validated in full first: a broken or corrupt one offers nothing
    (pass 2 rejects it with the reason).
    """

    def __init__(
        self,
        spec: DatasetSpec,
        config: TokenizerConfig,
        *,
        sequence: SequenceConfig,
        return_fn: Callable[[RawEpisode], float],
        rest: bool = False,
    ) -> None:
        super().__init__(config, sequence=sequence, return_fn=return_fn)
        self._spec = spec
        self._rest = rest

    def setup(self) -> None:
        super().setup()
        self._readers = ShardReaders()

    def process(  # type: ignore[override]
        self, item: WorkItem, selections: Mapping[TaskKey, CandidateSelection]
    ) -> Iterator[tuple[TaskKey, PromptCandidate]]:
        selection = selections.get((item.dataset, item.task))
        if selection is None:
            return
        chosen = selection.indices_in(item.index)
        if not chosen and not self._rest:
            return
        reader = self._readers(item.builder_dir)
        only = None if self._rest else chosen
        for raw in read_shard(item, reader=reader, spec=self._spec, only=only):
            if isinstance(raw, Reject) or (self._rest and raw.key.index_in_file in chosen):
                continue
            try:
                check_rlds(raw)
            except RldsViolation:
                continue
            yield from self._candidate(raw)
