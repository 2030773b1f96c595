"""Hugging Face Parquet (as `datasets` writes it) -> `VLRecord`s, one file per work item.

Every kind (spec section 8, `formats/vl_fields.py` for the parts): captions (a string,
`list<string>`, COCO-style `list<struct<text>>`), VQA (`question` + `multiple_choice_answer`
or `answers[*].answer`), text (C4 `text`, Wikipedia `title` + `text`, OSCAR `content`:
every mapped column present, joined by a blank line) and interleaved documents (OBELICS:
aligned `images` / `texts` lists). Images are HF image structs `{bytes, path}` (a path is
relative to the Parquet file's directory), raw bytes, or path strings.

Lazy: batches of at most `BATCH_ROWS` rows, row group by row group, only the columns the
mapping names, so a worker holds one batch. Text columns are read as binary (string types
cast to binary, also inside lists and structs): invalid UTF-8 cannot fail the read and
reaches the tokenizer as bytes. Image columns keep their string types (paths are names).
"""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from formats.vl_fields import row_record
from schemas.vl import FieldMapping
from transforms.episode import WorkItem
from transforms.vl_types import VLRecord

BATCH_ROWS = 64  # images are large: a batch is what a worker holds at once


def as_binary(type_: pa.DataType) -> pa.DataType:
    """`type_` with every string type (also inside lists and structs) made binary."""
    if pa.types.is_string(type_):
        return pa.binary()
    if pa.types.is_large_string(type_):
        return pa.large_binary()
    if pa.types.is_list(type_):
        return pa.list_(as_binary(type_.value_type))
    if pa.types.is_large_list(type_):
        return pa.large_list(as_binary(type_.value_type))
    if pa.types.is_struct(type_):
        return pa.struct([field.with_type(as_binary(field.type)) for field in type_])
    return type_


def mapped_columns(schema: pa.Schema, mapping: FieldMapping, *, extra: tuple[str, ...] = ()) -> list[str]:
    """The file's top-level columns the mapping (or `extra`) names (a dotted name reads its
    first part), in file order."""
    wanted = set(extra)
    for names in vars(mapping).values():
        for name in names:
            wanted.add(name)
            wanted.add(name.split(".", 1)[0])
    return [name for name in schema.names if name in wanted]


def _read_schema(schema: pa.Schema, columns: list[str], mapping: FieldMapping) -> pa.Schema:
    """The schema rows are cast to: text columns binary, image columns as stored."""
    images = {name.split(".", 1)[0] for name in (*mapping.image, *mapping.images)}
    fields = [schema.field(name) for name in columns]
    return pa.schema([f if f.name in images else f.with_type(as_binary(f.type)) for f in fields])


def iter_rows(
    url: str, mapping: FieldMapping, *, batch_rows: int = BATCH_ROWS, extra: tuple[str, ...] = ()
) -> Iterator[dict]:
    """The rows of one Parquet file in file order, as dicts of the mapped columns (and
    those of `extra` the file has)."""
    with fsspec.open(url, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        columns = mapped_columns(parquet.schema_arrow, mapping, extra=extra)
        target = _read_schema(parquet.schema_arrow, columns, mapping)
        if not columns:  # no mapped column: each row is still a record (with its problems)
            for _ in range(parquet.metadata.num_rows):
                yield {}
            return
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.cast(target).to_pylist()


def read_parquet(item: WorkItem, *, kind: str, mapping: FieldMapping) -> Iterator[VLRecord]:
    """The records of one work item's Parquet file, in file order (`index_in_file` = row).

    A file Parquet cannot read (not Parquet, truncated, a broken page) raises ValueError
    naming the file and the rows read before it: the records before it stay read.
    """
    read = 0
    try:
        for row in iter_rows(item.shard_path, mapping):
            yield row_record(row, item, kind=kind, mapping=mapping, index=read)
            read += 1
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{item.source_file}: Parquet file unreadable after row {read}: {e}") from e
