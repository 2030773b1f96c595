"""Trainer-side reader: streams finished outputs (Parquet shards + manifest.json) as batches.

Mixes datasets and tasks by weight, shuffles with a bounded buffer, splits work by rank
and data-loader worker, reads ahead in a background thread, and saves/restores its
position exactly (also across world sizes). Imports numpy, pyarrow and fsspec only;
the PyTorch adapter is `reader.torch` (imported on demand).
"""

from reader.batch import GLOBAL_INDEX, PATCH_MASK, SOURCE
from reader.finished_output import Output, check_compatible, open_output
from reader.mixture import Exhausted, resolve_weights
from reader.stream import BatchStream, GatoReader, ReaderOptions

__all__ = [
    "GLOBAL_INDEX",
    "PATCH_MASK",
    "SOURCE",
    "BatchStream",
    "Exhausted",
    "GatoReader",
    "Output",
    "ReaderOptions",
    "check_compatible",
    "open_output",
    "resolve_weights",
]
