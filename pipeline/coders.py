"""Coders for the job's array-heavy elements: pickled as Beam pickles them, sized from their arrays.

Beam samples elements of every PCollection, fused or not, to report their mean size (the
first 10 of each output, then about 10/n), and it sizes an element of a type it does not
know by pickling it whole. An Atari-like episode's `TokenizedEpisode` or `SequenceBatch`
is ~10 MB of patch pixels: ~8 ms a sample, ~0.4 s of a 64-episode job spent on figures
nobody reads. `ArraysCoder` pickles an element exactly when Beam must move it (between
stages that do not fuse) and estimates its size as the bytes of its arrays.

A stage's main output gets these coders through its output type
(`.with_output_types(EPISODE_TOKENS)`, `SEQUENCED`) and Beam's coder registry, which this
module fills when imported; tagged outputs keep Beam's default coder. The coders pickle
what they are given, so a mistyped element is still coded; only its size is estimated
from what `nbytes` finds.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import apache_beam as beam
import numpy as np

from transforms.episode import EpisodeKey
from transforms.sequence import SequenceBatch
from transforms.types import TokenizedEpisode

# Output types of the stages whose main output is array-heavy (Beam's own Tuple: the
# registry maps it to a TupleCoder of the parts' coders; typing.Tuple it does not).
EPISODE_TOKENS = beam.typehints.Tuple[EpisodeKey, TokenizedEpisode]  # the Tokenize stage
SEQUENCED = beam.typehints.Tuple[EpisodeKey, SequenceBatch]  # the Sequence stage

_OVERHEAD = 512  # bytes a pickled dataclass of arrays adds to its arrays' bytes, about


def nbytes(value: Any) -> int:
    """The bytes of a dataclass's numpy arrays (one level deep, tuples of arrays included),
    plus a constant for the rest."""
    if not dataclasses.is_dataclass(value):
        return _OVERHEAD
    total = _OVERHEAD
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if isinstance(item, np.ndarray):
            total += item.nbytes
        elif isinstance(item, (tuple, list)):
            total += sum(x.nbytes for x in item if isinstance(x, np.ndarray))
    return total


class ArraysCoder(beam.coders.Coder):
    """Pickle (highest protocol) for a dataclass of arrays; `estimate_size` never encodes."""

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False  # pickled bytes are never used as keys

    def estimate_size(self, value: Any) -> int:
        return nbytes(value)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


beam.coders.registry.register_coder(TokenizedEpisode, ArraysCoder)
beam.coders.registry.register_coder(SequenceBatch, ArraysCoder)
