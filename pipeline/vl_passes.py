"""The vision-language and text job (spec section 8): one pass, then the same outputs as
the agent data (docs/ARCHITECTURE.md).

WorkItems -> "VLRead" (records) -> "VLTokenize" (units, rejects) -> "VLSequence" (rows)
-> "Write" / "FinalizeShards" (the agent data's writer, `VL_SEQUENCE_SCHEMA`), and
"VLOutputs": the rejects shards, the statistics and report, the viewer, the dataset
card, then the manifest, written last. No filter and no prompts (spec section 8).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam

from formats.parquet_shards import WriteOptions, sequence_schema
from pipeline import vl_statistics as stats_stage
from pipeline.passes import publish_manifest
from pipeline.read_vl_records import DOCUMENTS_PER_ELEMENT, ReadVLRecords
from pipeline.rejects import REJECTS_TAG
from pipeline.sequence_vl_units import SequenceVLUnits
from pipeline.tokenize_vl_records import TokenizeVLRecords
from pipeline.write_shards import FinalizeShards, WriteRejects, WriteShards
from planning.options import JobOptions
from planning.vl_plan import VLPlan
from schemas import output as out
from schemas.fields import FieldSpec, image, text
from schemas.output import REJECTS_DIR, SEQUENCES_DIR, VL_SEQUENCE_SCHEMA
from schemas.vl import PAIR_KINDS
from schemas.vocab import get_layout
from transforms.vl_units import UnitConfig

IMAGE_FIELD = "image"
TEXT_FIELD = "text"


@dataclasses.dataclass(frozen=True)
class VLJobParts:
    """What the stages of one vision-language job need. `eos_id`: the text model's
    end-of-sequence id (None: it has none, and E is omitted)."""

    options: JobOptions
    plan: VLPlan
    eos_id: int | None
    extra_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def units(self) -> UnitConfig:
        o = self.options
        return UnitConfig(sequence_length=o.sequence_length, image_size=o.image_size,
                          layout=get_layout(o.layout), eos_id=self.eos_id)

    @property
    def fields(self) -> dict[str, dict[str, FieldSpec]]:
        size = (self.options.image_size, self.options.image_size)
        return {self.plan.dataset.name: {IMAGE_FIELD: image(size), TEXT_FIELD: text()}}

    def description(self) -> dict[str, Any]:
        """What the manifest says of the data beyond the agent data's keys."""
        spec = self.plan.dataset
        return {spec.name: {
            out.VL_KIND: spec.kind, out.VL_FORMAT: self.plan.format, out.VL_MAPPING: self.plan.mapping.to_metadata(),
            out.VL_IMAGE_SIZE: self.options.image_size, out.VL_END_OF_SEQUENCE_ID: self.eos_id,
            out.VL_END_OF_SEQUENCE: "written after every target text" if self.eos_id is not None
            else "omitted: the text model has no end-of-sequence id",
            out.VL_PROMPT_FRACTION: 0.0,
        }}


def build_vl_pipeline(root: beam.Pipeline, parts: VLJobParts) -> None:
    """Adds the whole vision-language job to `root` (module doc)."""
    options, spec = parts.options, parts.plan.dataset
    layout = get_layout(options.layout)
    work = root | "WorkItems" >> beam.Create(parts.plan.work_items, reshuffle=False)
    records = work | "VLRead" >> ReadVLRecords(
        kind=spec.kind, format=parts.plan.format, mapping=parts.plan.mapping,
        records_per_element=None if spec.kind in PAIR_KINDS else DOCUMENTS_PER_ELEMENT,
    )
    tokenized = records | "VLTokenize" >> TokenizeVLRecords(
        parts.units, sentencepiece_model=options.sentencepiece_model or "", strict=options.strict
    )
    rows = tokenized.outcomes | "VLSequence" >> SequenceVLUnits(
        kind=spec.kind, seed=options.seed, sequence_length=options.sequence_length, layout=layout
    )
    schema = sequence_schema(layout=layout, fields=parts.fields, sequence_length=options.sequence_length,
                             base=VL_SEQUENCE_SCHEMA)
    writing = WriteOptions(output_dir=options.output_dir, rows_per_shard=options.rows_per_shard)
    shards = (
        rows
        | "Write" >> beam.ParDo(WriteShards(writing, schema))
        | "FinalizeShards" >> FinalizeShards(options.output_dir, kind=SEQUENCES_DIR)
    )
    reject_shards = (
        tokenized[REJECTS_TAG]
        | "WriteRejects" >> WriteRejects(writing)
        | "FinalizeRejects" >> FinalizeShards(options.output_dir, kind=REJECTS_DIR)
    )
    stats = {
        stats_stage.OUTCOMES: tokenized.outcomes, stats_stage.ROWS: rows, stats_stage.SHARDS: shards,
    } | "Stats" >> stats_stage.VLStatistics(
        options.output_dir, text_model=options.sentencepiece_model, sequence_length=options.sequence_length, layout=layout
    )
    _ = (
        root
        | "ManifestTrigger" >> beam.Create([None])
        | "Manifest" >> beam.Map(
            functools.partial(_write_manifest, parts=parts),
            shards=beam.pvalue.AsSingleton(shards),
            rejects=beam.pvalue.AsSingleton(reject_shards),
            stats=beam.pvalue.AsSingleton(stats),
        )
    )


def _write_manifest(
    _: None,
    *,
    shards: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]],
    stats: Mapping[str, str],
    parts: VLJobParts,
) -> str:
    options, spec = parts.options, parts.plan.dataset
    return publish_manifest(
        options, extra=parts.extra_config, fields=parts.fields, weights={spec.name: spec.sample_weight},
        field_shapes={spec.name: {spec.task: {IMAGE_FIELD: (options.image_size, options.image_size, 3)}}},
        shards=shards, rejects=rejects, stats=stats, entries={out.M_VISION_LANGUAGE: parts.description()},
    )
