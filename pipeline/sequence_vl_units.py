"""The Sequence stage of vision-language and text data: tuples of RecordOutcomes -> rows
(`(EpisodeKey, SequenceBatch)`, what `WriteShards` takes), spec section 8.

- Pairs (captions, VQA) are packed per input file: a file's outcomes arrive as one tuple
  (`read_vl_records`: no shuffle), and `transforms.vl_sequence.pack_pairs` orders their
  units by a stable hash (a total order, so the rows depend on the records only, not on
  the order they came in) and packs at most 5 to a row. A file's records and units are held
  in memory at once: its encoded images and about 110 KB of patches per image at S = 192.
- Documents (text, interleaved) are cut in read order, the documents of one element
  (a tuple of up to `read_vl_records.DOCUMENTS_PER_ELEMENT`) into one batch of rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from pipeline.counters import TaskCounters
from schemas.vl import PAIR_KINDS
from schemas.vocab import VocabLayout
from transforms.episode import EpisodeKey
from transforms.sequence import SequenceBatch
from transforms.vl_sequence import cut_documents, pack_pairs
from transforms.vl_types import RecordOutcome

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
    """A file's outcomes (a tuple) -> (EpisodeKey, SequenceBatch) of the file's rows."""

    def __init__(self, *, seed: int, sequence_length: int, layout: VocabLayout) -> None:
        self._seed = seed
        self._length = sequence_length
        self._layout = layout

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, outcomes: tuple[RecordOutcome, ...]) -> Iterator[tuple[EpisodeKey, SequenceBatch]]:
        units = [unit for outcome in outcomes for unit in outcome.units]
        if not units:
            return
        file = _file_key(outcomes[0])
        batch = pack_pairs(units, seed=self._seed, dataset=file[0], sequence_length=self._length, layout=self._layout)
        self._counters.inc((file[0], file[1]), "rows", batch.num_sequences)
        yield _row_key(file, batch.row_episode_ids[0] if batch.row_episode_ids else ""), batch


class CutDocumentsFn(beam.DoFn):
    """A tuple of outcomes -> (EpisodeKey, SequenceBatch) of the rows of its kept documents,
    in order, in one batch."""

    def __init__(self, *, sequence_length: int, layout: VocabLayout) -> None:
        self._length = sequence_length
        self._layout = layout

    def setup(self) -> None:
        self._counters = TaskCounters(COUNTER_NAMESPACE)

    def process(self, outcomes: tuple[RecordOutcome, ...]) -> Iterator[tuple[EpisodeKey, SequenceBatch]]:
        kept = [o for o in outcomes if o.units]
        if not kept:
            return
        units = [unit for outcome in kept for unit in outcome.units]
        batch = cut_documents(units, sequence_length=self._length, layout=self._layout)
        first = kept[0].record
        self._counters.inc((first.dataset, first.task), "rows", batch.num_sequences)
        yield _row_key(_file_key(kept[0]), units[0].key, first.index_in_file), batch


class SequenceVLUnits(beam.PTransform):
    """PCollection[tuple[RecordOutcome, ...]] (a file's, or some of a file's documents) ->
    PCollection[(EpisodeKey, SequenceBatch)] (module doc)."""

    def __init__(self, *, kind: str, seed: int, sequence_length: int, layout: VocabLayout) -> None:
        super().__init__()
        self._kind = kind
        self._seed = seed
        self._length = sequence_length
        self._layout = layout

    def expand(self, outcomes: beam.PCollection) -> beam.PCollection:
        if self._kind in PAIR_KINDS:
            return outcomes | "PackPairs" >> beam.ParDo(
                PackFilePairsFn(seed=self._seed, sequence_length=self._length, layout=self._layout)
            )
        return outcomes | "CutDocuments" >> beam.ParDo(
            CutDocumentsFn(sequence_length=self._length, layout=self._layout)
        )
