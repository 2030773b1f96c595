"""Text corpora -> `VLRecord`s: JSONL (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`) and `.txt`.

JSONL: one JSON object per line, read line by line through fsspec (gzip and zstd
decompressed by the file name's ending), so a worker holds one line. A line is decoded
with `surrogateescape` before JSON parsing, so bytes that are not UTF-8 come back as
the same bytes (`formats/vl_fields.text_bytes`) and the tokenizer rejects them with
their reason; the text mapping is the Parquet one (every present field joined by a blank
line). A line that is not a JSON object is a record with an UNREADABLE_RECORD problem
(keyed `<file>:<index>`), never a crash. Lines of only whitespace are not records (a file
ends with a newline; editors add blank lines). `index_in_file` counts records.

`.txt`: the whole file is one document, keyed by its name relative to the data dir.

A file that cannot be decompressed (a broken gzip or zstd stream) raises ValueError
naming the file and the records read before it.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator

import fsspec
import zstandard  # fsspec's zstd codec; imported for its error type

from formats.vl_fields import row_record, unreadable_record
from schemas.vl import KIND_TEXT, FieldMapping
from transforms.episode import WorkItem
from transforms.vl_types import VLRecord

_BUFFER = 1 << 20


def parse_line(line: bytes) -> dict | str:
    """A JSONL line's object, or why it is not one (a one-line message)."""
    try:
        value = json.loads(line.decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError as e:
        return f"not JSON ({e})"
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    return value


def iter_lines(url: str) -> Iterator[bytes]:
    """The non-blank lines of a (possibly gzip/zstd compressed) text file, as bytes."""
    with fsspec.open(url, "rb", compression="infer") as raw:
        # zstandard's stream reader cannot iterate lines; a buffer over any reader can.
        for line in io.BufferedReader(raw, buffer_size=_BUFFER):
            if line.strip():
                yield line


def read_jsonl(item: WorkItem, *, kind: str, mapping: FieldMapping) -> Iterator[VLRecord]:
    """The records of one JSONL work item, one per non-blank line, in file order."""
    index = 0
    try:
        for line in iter_lines(item.shard_path):
            row = parse_line(line)
            if isinstance(row, str):
                yield unreadable_record(item, kind=kind, index=index, detail=f"{item.source_file}: line of record {index} is {row}")
            else:
                yield row_record(row, item, kind=kind, mapping=mapping, index=index)
            index += 1
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as e:
        raise ValueError(f"{item.source_file}: unreadable after record {index}: {e}") from e


def read_txt(item: WorkItem, *, kind: str = KIND_TEXT) -> Iterator[VLRecord]:
    """One text document: the whole file, as bytes, keyed by its relative name."""
    if kind != KIND_TEXT:
        raise ValueError(f"{item.source_file}: a .txt file is one text document; kind {kind!r} cannot be read from it")
    with fsspec.open(item.shard_path, "rb") as handle:
        text = handle.read()
    yield VLRecord(
        dataset=item.dataset, task=item.task, kind=kind, key=item.source_file,
        source_file=item.source_file, index_in_file=0, work_item=item.index, segments=(text,),
    )
