"""The Tokenize stage of vision-language and text data: a tuple of a file's records
(`read_vl_records`) -> the tuple of their RecordOutcomes (units, spec section 8), in the
same order, and a `Reject` per rejected pair or record.

Every record has its outcome, kept or not, so the statistics count each record once
(read = kept + rejected). The SentencePiece model is opened once per worker (`setup()`).
Under `--strict` the first reject stops the job with its detail (record key, field, value).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from pipeline.counters import TaskCounters
from pipeline.rejects import REJECTS_TAG, reject_or_raise
from transforms.episode import Reject
from transforms.text import SentencePieceTokenizer
from transforms.vl_types import RecordOutcome, VLRecord
from transforms.vl_units import UnitConfig, tokenize_record

OUTCOMES = "outcomes"  # main output tag
COUNTER_NAMESPACE = "gato.vl_tokenize"


def outcome_rejects(outcome: RecordOutcome) -> list[Reject]:
    """The Rejects of an outcome, each named by its record key and source file."""
    record = outcome.record
    return [
        Reject(dataset=record.dataset, task=record.task, episode_id=record.key, source_file=record.source_file,
               reason=reason, field=field, detail=f"{record.source_file}, record {record.index_in_file} "
               f"(key {record.key!r}): {detail}")
        for reason, field, detail in outcome.rejects
    ]


class TokenizeVLRecordsFn(beam.DoFn):
    """A tuple of records -> the tuple of their RecordOutcomes (main), Reject (`rejects`);
    counters `kept`, `rejected` (records) and `units` per task."""

    def __init__(self, config: UnitConfig, *, sentencepiece_model: str, strict: bool = False) -> None:
        self._config = config
        self._model = sentencepiece_model
        self._strict = strict

    def setup(self) -> None:
        self._tokenizer = SentencePieceTokenizer.from_path(self._model)
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, records: tuple[VLRecord, ...]) -> Iterator[Any]:
        outcomes = []
        for record in records:
            outcome = tokenize_record(record, self._tokenizer, self._config)
            task = (record.dataset, record.task)
            for reject in outcome_rejects(outcome):
                yield reject_or_raise(reject, strict=self._strict, counters=self._counters, counter="rejects")
            self._counters.inc(task, "kept" if outcome.kept else "rejected")
            self._counters.inc(task, "units", len(outcome.units))
            outcomes.append(outcome)
        yield tuple(outcomes)


class TokenizeVLRecords(beam.PTransform):
    """PCollection[tuple[VLRecord, ...]] -> outputs `outcomes` (tuple[RecordOutcome, ...])
    and `rejects` (Reject)."""

    def __init__(self, config: UnitConfig, *, sentencepiece_model: str, strict: bool = False) -> None:
        super().__init__()
        self._fn = TokenizeVLRecordsFn(config, sentencepiece_model=sentencepiece_model, strict=strict)

    def expand(self, records: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return records | "TokenizeRecord" >> beam.ParDo(self._fn).with_outputs(REJECTS_TAG, main=OUTCOMES)
