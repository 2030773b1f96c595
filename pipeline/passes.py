"""The job's three named composites: `Pass1`, `Pass2` and `Outputs` (docs/ARCHITECTURE.md).

Two passes read the same TFDS shards; nothing ever groups whole episodes, so a worker
holds one episode at a time.
- `Pass1` (WorkItems -> returns, verdicts, prompt pools): every episode is read in full
  and given the verdict pass 2 will reach (`transforms/verdict.py`: RLDS rules, a finite
  return, tokenization, unique ids); only the usable episodes' returns give the task's
  threshold (joined with pass 1's rejects into a `TaskVerdicts`) and choose the few
  episodes whose windows fill the prompt pools.
- `Pass2` (WorkItems + pass 1's side inputs -> shards, rejects, books): read, validate,
  filter, tokenize, sequence and write, fused into one chain per work item.
- `Outputs`: the rejects shards, the statistics and report, the token viewer, the dataset
  card, then the manifest, written last from the finalized shard lists, so an output
  without `manifest.json` is unfinished.

Each composite takes and returns a dict of PCollections keyed by the names below, so a
test can run one pass, or the whole job, exactly as the job wires it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import apache_beam as beam

from audit.viewer import write_viewer
from formats.dataset_card import add_card
from formats.manifest import build_manifest, write_manifest
from formats.parquet_shards import WriteOptions, sequence_schema
from pipeline import episode_verdicts as verdicts_stage
from pipeline.coders import SEQUENCED
from pipeline import task_statistics as stats_stage
from pipeline.episode_verdicts import EpisodeVerdicts, JoinVerdicts, UniqueEpisodeIds
from pipeline.filter_episodes import ExpertThresholds, FilterEpisodes
from pipeline.prompt_pools import BuildPromptPools
from pipeline.read_episodes import ReadEpisodes
from pipeline.rejects import REJECTS_TAG
from pipeline.sequence_episodes import COUNTS_TAG, SequenceEpisodes
from pipeline.tokenize_episodes import TokenizeEpisodes
from pipeline.validate_episodes import ValidateEpisodes
from pipeline.write_shards import FinalizeShards, WriteRejects, WriteShards
from planning.options import JobOptions
from planning.work import Plan, all_fields
from schemas.datasets import DatasetSpec
from schemas.fields import EPISODE_RETURN, REWARD
from schemas.output import M_STATS, M_STATS_VIEWER, REJECTS_DIR, SEQUENCES_DIR
from schemas.rlds_spec import RETURN_EPISODE_RETURN
from schemas.vocab import get_layout
from transforms.books import StatsOptions
from transforms.episode import RawEpisode
from transforms.rlds_rules import episode_return
from transforms.sequence import SequenceConfig
from transforms.task_tokenizer import TokenizerConfig

# Keys of the dicts the composites take and return.
WORK = "work"  # WorkItem, one per input shard
RETURNS = "returns"  # EpisodeReturn of every usable episode (pass 1's verdict)
THRESHOLDS = "thresholds"  # (TaskKey, TaskVerdicts): the threshold and pass 1's rejects
POOLS = "pools"  # (TaskKey, PromptPool)
SHARDS = "shards"  # one element: the manifest entries of every sequences shard
REJECTS = "rejects"  # Reject, from every stage of pass 2
DECISIONS = "decisions"  # FilterDecision of every episode that reached the filter
KEPT = "kept"  # KeptEpisode: kept by the filter and tokenized
SEQUENCE_COUNTS = "sequence_counts"  # (TaskKey, SequenceCounts) per sequenced episode
MANIFEST = "manifest"  # one element: the written manifest's path

PASS1_NAMESPACE = "gato.read_pass1"  # pass 1 reads under its own name: no episode counts twice


@dataclasses.dataclass(frozen=True)
class JobParts:
    """What the stages of one job need, derived once from its options and plan.

    `extra_config`: run-time facts that determine the content (the text model's sha256),
    recorded in the manifest's configuration and hash.
    """

    options: JobOptions
    plan: Plan
    extra_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def spec(self) -> DatasetSpec:
        return self.plan.dataset

    @property
    def return_fn(self) -> Callable[[RawEpisode], float]:
        return functools.partial(episode_return, spec=self.spec)

    @property
    def return_field(self) -> str:
        """The field an episode's return comes from, for reject messages."""
        return EPISODE_RETURN if self.spec.return_source == RETURN_EPISODE_RETURN else REWARD

    @property
    def tokenizer(self) -> TokenizerConfig:
        return TokenizerConfig(
            task_fields=self.plan.task_fields,
            layout=self.options.layout,
            sentencepiece_model=self.options.sentencepiece_model,
            local_position_table=self.spec.local_position_table,
            max_timestep_tokens=self.options.sequence_length,
        )

    @property
    def sequencing(self) -> SequenceConfig:
        options = self.options
        return SequenceConfig(
            sequence_length=options.sequence_length,
            prompt_fraction=options.prompt_fraction,
            prompt_budget=options.effective_prompt_tokens,
            seed=options.seed,
            layout=get_layout(options.layout),
        )

    @property
    def writing(self) -> WriteOptions:
        return WriteOptions(output_dir=self.options.output_dir, rows_per_shard=self.options.rows_per_shard)

    @functools.cached_property
    def fields(self) -> dict[str, dict[str, Any]]:
        """{dataset: {field path: FieldSpec}} (one spec per path; a start-up error otherwise)."""
        return {self.spec.name: all_fields(self.plan)}


class Pass1(beam.PTransform):
    """WorkItems -> {RETURNS, THRESHOLDS, POOLS} (module doc).

    Since a pool keeps the top K by return, only the chosen episodes' records are decoded
    again for their windows. Pass 1 reports no reject itself: pass 2 reports each where it
    reads the episode (the RLDS and return checks it repeats, the others from
    `TaskVerdicts.rejects`). Under `--strict` the first bad episode stops the job here,
    before any shard is written.
    """

    def __init__(self, parts: JobParts) -> None:
        super().__init__()
        self._parts = parts

    def expand(self, work: beam.PCollection) -> dict[str, beam.PCollection]:
        parts, options = self._parts, self._parts.options
        read = work | "Read" >> ReadEpisodes(parts.spec, strict=options.strict, namespace=PASS1_NAMESPACE)
        checked = read.episodes | "Verdict" >> EpisodeVerdicts(
            parts.tokenizer, return_fn=parts.return_fn, return_field=parts.return_field,
            namespace=PASS1_NAMESPACE, strict=options.strict,
        )
        unique = checked[verdicts_stage.RETURNS] | "UniqueIds" >> UniqueEpisodeIds(
            namespace=PASS1_NAMESPACE, strict=options.strict
        )
        returns = unique[verdicts_stage.RETURNS]
        thresholds = returns | "ExpertReturn" >> ExpertThresholds(
            fraction=options.filter_fraction, cap=options.window_cap
        )
        rejects = (checked[REJECTS_TAG], unique[REJECTS_TAG]) | "Pass1Rejects" >> beam.Flatten()
        verdicts = {
            verdicts_stage.THRESHOLDS: thresholds, verdicts_stage.REJECTS: rejects
        } | "TaskVerdicts" >> JoinVerdicts()
        pools = {"work": work, "returns": returns} | "PromptPools" >> BuildPromptPools(
            parts.spec, tokenizer=parts.tokenizer, sequencing=parts.sequencing, capacity=options.prompt_pool_size
        )
        return {RETURNS: returns, THRESHOLDS: verdicts, POOLS: pools}


class Pass2(beam.PTransform):
    """{WORK, THRESHOLDS, POOLS} -> {SHARDS, REJECTS, DECISIONS, KEPT, SEQUENCE_COUNTS}:
    one episode at a time from its input shard to an output shard."""

    def __init__(self, parts: JobParts) -> None:
        super().__init__()
        self._parts = parts

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        parts, options = self._parts, self._parts.options
        thresholds = beam.pvalue.AsDict(inputs[THRESHOLDS])
        read = inputs[WORK] | "Read" >> ReadEpisodes(parts.spec, strict=options.strict)
        valid = read.episodes | "Validate" >> ValidateEpisodes(strict=options.strict)
        filtered = valid.valid | "Filter" >> FilterEpisodes(
            thresholds, return_fn=parts.return_fn, return_field=parts.return_field,
            no_filter=options.no_filter, strict=options.strict,
        )
        # Every kept episode passed pass 1's verdict on the same bytes (the TFRecord CRCs).
        tokenized = filtered.kept | "Tokenize" >> TokenizeEpisodes(
            parts.tokenizer, return_fn=parts.return_fn, strict=options.strict, verified=True
        )
        sequenced = tokenized.tokenized | "Sequence" >> beam.ParDo(
            SequenceEpisodes(parts.sequencing, strict=options.strict),
            beam.pvalue.AsDict(inputs[POOLS]),
            thresholds,
        ).with_output_types(SEQUENCED).with_outputs(REJECTS_TAG, COUNTS_TAG, main="sequences")
        schema = sequence_schema(
            layout=get_layout(options.layout), fields=parts.fields, sequence_length=options.sequence_length
        )
        shards = (
            sequenced.sequences
            | "Write" >> beam.ParDo(WriteShards(parts.writing, schema))
            | "FinalizeShards" >> FinalizeShards(options.output_dir, kind=SEQUENCES_DIR)
        )
        rejects = (
            read[REJECTS_TAG], valid[REJECTS_TAG], filtered[REJECTS_TAG], tokenized[REJECTS_TAG], sequenced[REJECTS_TAG]
        ) | "AllRejects" >> beam.Flatten()
        return {
            SHARDS: shards,
            REJECTS: rejects,
            DECISIONS: filtered.decisions,
            KEPT: tokenized.kept,
            SEQUENCE_COUNTS: sequenced[COUNTS_TAG],
        }


class Outputs(beam.PTransform):
    """{RETURNS, THRESHOLDS, SHARDS, REJECTS, DECISIONS, KEPT, SEQUENCE_COUNTS} -> {MANIFEST}:
    the rejects shards and the statistics, then the manifest from all of them."""

    def __init__(self, parts: JobParts) -> None:
        super().__init__()
        self._parts = parts

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        options = self._parts.options
        reject_shards = (
            inputs[REJECTS]
            | "WriteRejects" >> WriteRejects(self._parts.writing)
            | "FinalizeRejects" >> FinalizeShards(options.output_dir, kind=REJECTS_DIR)
        )
        stats_paths = {
            stats_stage.THRESHOLDS: inputs[THRESHOLDS] | "ExpertThresholds" >> beam.FlatMapTuple(_expert),
            stats_stage.RETURNS: inputs[RETURNS],
            stats_stage.DECISIONS: inputs[DECISIONS],
            stats_stage.KEPT: inputs[KEPT],
            stats_stage.REJECTS: inputs[REJECTS],
            stats_stage.SEQUENCE_COUNTS: inputs[SEQUENCE_COUNTS],
        } | "Stats" >> stats_stage.TaskStatistics(
            options.output_dir,
            options=StatsOptions(fraction=options.filter_fraction, cap=options.window_cap, no_filter=options.no_filter),
        )
        manifest = (
            inputs[SHARDS].pipeline
            | "ManifestTrigger" >> beam.Create([None])
            | "Manifest" >> beam.Map(
                functools.partial(_write_manifest, parts=self._parts),
                shards=beam.pvalue.AsSingleton(inputs[SHARDS]),
                rejects=beam.pvalue.AsSingleton(reject_shards),
                stats=beam.pvalue.AsSingleton(stats_paths),
            )
        )
        return {MANIFEST: manifest}


def _expert(task: Any, verdicts: Any) -> list[tuple[Any, Any]]:
    """(task, TaskThreshold) of a task with usable episodes; nothing for the others."""
    return [] if verdicts.expert is None else [(task, verdicts.expert)]


def _write_manifest(
    _: None,
    *,
    shards: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]],
    stats: Mapping[str, str],
    parts: JobParts,
) -> str:
    spec = parts.spec
    return publish_manifest(
        parts.options, extra=parts.extra_config, fields=parts.fields, weights={spec.name: spec.sample_weight},
        field_shapes={spec.name: parts.plan.field_shapes}, shards=shards, rejects=rejects, stats=stats,
    )


def publish_manifest(
    options: JobOptions,
    *,
    extra: Mapping[str, Any],
    fields: Mapping[str, Mapping[str, Any]],
    weights: Mapping[str, float | None],
    field_shapes: Mapping[str, Any],
    shards: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]],
    stats: Mapping[str, str],
    entries: Mapping[str, Any] | None = None,
) -> str:
    """Builds the manifest (plus `entries`, top-level keys of one kind of data), writes the
    viewer and the dataset card it lists, then publishes it: the last step of every job."""
    manifest = build_manifest(
        config={**options.to_config(), **extra},
        layout=get_layout(options.layout),
        fields=fields,
        sequence_length=options.sequence_length,
        shards=shards,
        rejects=rejects,
        stats=stats,
        dataset_weights=weights,
        config_digest=options.config_hash(dict(extra)),
        field_shapes=field_shapes,
    )
    manifest.update(entries or {})
    # The viewer is listed beside the report; the card, written last before the manifest, describes both.
    manifest[M_STATS][M_STATS_VIEWER] = write_viewer(options.output_dir, manifest, text_model=options.sentencepiece_model)
    return write_manifest(options.output_dir, add_card(options.output_dir, manifest))
