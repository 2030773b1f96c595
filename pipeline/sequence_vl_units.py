"""The Sequence stage of vision-language and text data: RecordOutcome -> rows
(`(EpisodeKey, SequenceBatch)`, what `WriteShards` takes), spec section 8.

- Pairs (captions, VQA) are packed per input file: the units of one file are gathered
  with a GroupByKey on the work item, then `transforms.vl_sequence.pack_pairs` orders them
  by their stable hash (a total order, so the rows do not depend on the order in which a
  runner delivers the units) and packs at most 5 to a row. A file's units are held in
  memory at once: about 110 KB of patches per image at S = 192.
- Documents (text, interleaved) are cut one at a time (`cut_document`), in read order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam

from pipeline.counters import TaskCounters
from schemas.vl import PAIR_KINDS
from schemas.vocab import VocabLayout
from transforms.episode import EpisodeKey
from transforms.sequence import SequenceBatch
from transforms.vl_sequence import cut_document, pack_pairs
from transforms.vl_types import RecordOutcome, TokenizedUnit

COUNTER_NAMESPACE = "gato.vl_sequence"
FileKey = tuple[str, str, int, str]  # (dataset, task, work item, source file)


def _row_key(file: FileKey, first_id: str, index_in_file: int = 0) -> EpisodeKey:
    dataset, task, work_item, source_file = file
    return EpisodeKey(
        dataset=dataset, task=task, episode_id=first_id, order_key=(), source_file=source_file,
        index_in_file=index_in_file, work_item=work_item,
    )


def _file_key(outcome: RecordOutcome) -> FileKey:
    r = outcome.record
    return (r.dataset, r.task, r.work_item, r.source_file)


class PackFilePairsFn(beam.DoFn):
    """(FileKey, [units of each record]) -> (EpisodeKey, SequenceBatch) of the file's rows."""

    def __init__(self, *, seed: int, sequence_length: int, layout: VocabLayout) -> None:
        self._seed = seed
        self._length = sequence_length
        self._layout = layout

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, element: tuple[FileKey, Iterable[tuple[TokenizedUnit, ...]]]) -> Iterator[tuple[EpisodeKey, SequenceBatch]]:
        file, groups = element
        units = [unit for group in groups for unit in group]
        batch = pack_pairs(units, seed=self._seed, dataset=file[0], sequence_length=self._length, layout=self._layout)
        self._counters.inc((file[0], file[1]), "rows", batch.num_sequences)
        yield _row_key(file, batch.row_episode_ids[0] if batch.row_episode_ids else ""), batch


class CutDocumentsFn(beam.DoFn):
    """RecordOutcome -> (EpisodeKey, SequenceBatch) per kept document."""

    def __init__(self, *, sequence_length: int, layout: VocabLayout) -> None:
        self._length = sequence_length
        self._layout = layout

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, outcome: RecordOutcome) -> Iterator[tuple[EpisodeKey, SequenceBatch]]:
        for unit in outcome.units:
            batch = cut_document(unit, sequence_length=self._length, layout=self._layout)
            self._counters.inc((outcome.record.dataset, outcome.record.task), "rows", batch.num_sequences)
            yield _row_key(_file_key(outcome), unit.key, outcome.record.index_in_file), batch


class SequenceVLUnits(beam.PTransform):
    """PCollection[RecordOutcome] -> PCollection[(EpisodeKey, SequenceBatch)] (module doc)."""

    def __init__(self, *, kind: str, seed: int, sequence_length: int, layout: VocabLayout) -> None:
        super().__init__()
        self._kind = kind
        self._seed = seed
        self._length = sequence_length
        self._layout = layout

    def expand(self, outcomes: beam.PCollection) -> beam.PCollection:
        if self._kind in PAIR_KINDS:
            return (
                outcomes
                | "KeyByFile" >> beam.FlatMap(lambda o: [(_file_key(o), o.units)] if o.units else [])
                | "GatherFile" >> beam.GroupByKey()
                | "PackPairs" >> beam.ParDo(
                    PackFilePairsFn(seed=self._seed, sequence_length=self._length, layout=self._layout)
                )
            )
        return outcomes | "CutDocuments" >> beam.ParDo(
            CutDocumentsFn(sequence_length=self._length, layout=self._layout)
        )
