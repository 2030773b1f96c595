"""Sequences and rejects as Parquet shards (spec section 6): rows, schemas, the shard writer.

Layout (`schemas/output.py`): `sequences/<dataset>/<task>/part-<work item:05d>-<n:03d>.parquet`,
rejects likewise under `rejects/`. Names pass through `formats.paths.safe_component` and
`path_under` only (`shard_path`).

- `sequence_record_batch`: one episode's `SequenceBatch` -> its rows in `SEQUENCE_SCHEMA`
  (per-token list columns built over the numpy buffers, image patches as binary values
  with their positions); `sequence_schema` adds the metadata every sequences shard
  carries (vocabulary layout, field specs, image normalization, sequence length), which
  `decode_metadata` reads back.
- `rejects_record_batch`: rejects as rows of `REJECTS_SCHEMA`, in the order given (the
  caller sorts a task's rejects by `reject_sort_key`: they arrive in no particular order).
  Details pass through `stable_detail`, which drops memory addresses from Python reprs
  (Pillow's "cannot identify image file <_io.BytesIO object at 0x7f...>"), so a rerun
  writes the same bytes.
- `ShardWriter`: the rows of one (kind, dataset, task, work item) into consecutive shards,
  closed at row-group boundaries once `rows_per_shard` rows or `max_shard_bytes` of Arrow
  data are reached (`WriteOptions`). Memory: one row group plus the Parquet writer's pages.
  Each shard is written through a `formats.files.HashingWriter`, so its entry carries the
  file's bytes and sha256 (what the manifest records) without the file being read again.

Determinism: shard and row-group boundaries depend only on row counts and Arrow sizes,
and files carry no timestamps or ids, so the same rows in the same order give
byte-identical files (the Write stage, `pipeline/write_shards.py`, gets one work item's
rows in input order in one bundle). Atomicity: a shard is written under
`_tmp/<kind>/<attempt>/...` and reported as a `ShardEntry` (final relative path,
temporary path, rows, tokens, bytes, sha256); `formats.output_dir` moves it into place.
A full disk while writing a shard removes the partial file and raises
`formats.files.NoSpaceLeftError` ("no space left on <path>").
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from formats.files import HashingWriter, NoSpaceLeftError, is_no_space, no_space_error
from formats.manifest import canonical_json, fields_metadata
from formats.paths import path_under, relative_path, safe_component
from schemas.fields import FieldSpec
from schemas.output import (
    DATASET,
    DETAIL,
    EPISODE_ID,
    FIELD,
    IS_PROMPT,
    LOCAL_POSITIONS,
    LOSS_MASK,
    META_FIELDS,
    META_IMAGE_NORMALIZATION,
    META_LAYOUT,
    META_SEQUENCE_LENGTH,
    MODALITY,
    NUM_TOKENS,
    PATCH_PIXELS,
    PATCH_POSITION_WIDTH,
    PATCH_POSITIONS,
    PROMPT_EPISODE_ID,
    REASON,
    REJECTS_SCHEMA,
    SEQUENCE_INDEX,
    SEQUENCE_SCHEMA,
    SHARD_NAME_FORMAT,
    SOURCE_FILE,
    SOURCE_KEYS,
    TASK,
    TIMESTEP,
    TMP_DIR,
    TOKENS,
)
from schemas.vocab import IMAGE_NORMALIZATION, VocabLayout
from transforms.episode import EpisodeKey, Reject
from transforms.errors import without_addresses
from transforms.sequence import SequenceBatch

# Strings are dictionary-encoded; the integer lists compress better as plain + zstd.
_DICTIONARY_COLUMNS = (DATASET, TASK, EPISODE_ID, PROMPT_EPISODE_ID, SOURCE_FILE, REASON, FIELD)


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    """Where and how shards are written. A shard closes at a row-group boundary once it
    holds `rows_per_shard` rows or `max_shard_bytes` of (uncompressed Arrow) data."""

    output_dir: str
    rows_per_shard: int = 8192
    max_shard_bytes: int = 512 << 20
    row_group_rows: int = 128
    compression: str = "zstd"
    compression_level: int = 3

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ValueError("output_dir is empty")
        if self.rows_per_shard < 1 or self.row_group_rows < 1 or self.max_shard_bytes < 1:
            raise ValueError(
                f"rows_per_shard, row_group_rows and max_shard_bytes must be >= 1: {self}"
            )


def sequence_schema(
    *,
    layout: VocabLayout,
    fields: Mapping[str, Mapping[str, FieldSpec]],
    sequence_length: int,
    base: pa.Schema = SEQUENCE_SCHEMA,
) -> pa.Schema:
    """`base` (SEQUENCE_SCHEMA, or VL_SEQUENCE_SCHEMA) with the metadata every sequences shard carries."""
    return base.with_metadata(
        {
            META_LAYOUT: canonical_json(layout.to_metadata()).encode(),
            META_FIELDS: canonical_json(fields_metadata(fields)).encode(),
            META_IMAGE_NORMALIZATION: IMAGE_NORMALIZATION.encode(),
            META_SEQUENCE_LENGTH: str(int(sequence_length)).encode(),
        }
    )


def _dictionary(value: str, rows: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([value], pa.string()))


_NUMPY_TYPES = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32}  # the token columns' value types


def _values(values: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """A flat numpy array as an Arrow array of `value_type` without nulls: numbers share
    numpy's buffer, booleans are packed to bits (what `pa.array` gives, without its
    per-call conversion checks)."""
    flat = np.ascontiguousarray(values).reshape(-1)
    if pa.types.is_boolean(value_type):
        data = np.packbits(flat.astype(bool, copy=False).view(np.uint8), bitorder="little")
    else:
        # Arrow's own `to_pandas_dtype` imports pandas, which light installs do not have.
        data = flat.astype(_NUMPY_TYPES[value_type], copy=False)
    return pa.Array.from_buffers(value_type, flat.size, [None, pa.py_buffer(data)])


def _rows_of(values: np.ndarray, value_type: pa.DataType, offsets: pa.Array) -> pa.ListArray:
    """[S, L] numpy -> list<value_type> with one list of L values per row (no copy of rows);
    `offsets`: the rows' int32 offsets `0, L, ..., S*L`, one array for every such column."""
    return pa.ListArray.from_arrays(offsets, _values(values, value_type))


def sequence_record_batch(key: EpisodeKey, batch: SequenceBatch, schema: pa.Schema = SEQUENCE_SCHEMA) -> pa.RecordBatch:
    """The rows of one episode's sequences, in `schema` (SEQUENCE_SCHEMA + metadata)."""
    rows = batch.num_sequences
    num_patches = int(batch.patch_positions.shape[0])
    pixel_offsets = batch.patch_offsets.astype(np.int32)  # < 2 GiB of pixels per episode
    pixels = pa.Array.from_buffers(
        pa.binary(),
        num_patches,
        [None, pa.py_buffer(pixel_offsets), pa.py_buffer(np.ascontiguousarray(batch.patch_pixels))],
    )
    row_patches = pa.array(batch.row_patch_starts.astype(np.int32))
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * batch.tokens.shape[1])  # every token column's
    positions = pa.ListArray.from_arrays(
        pa.array(batch.row_patch_starts.astype(np.int32) * PATCH_POSITION_WIDTH),
        pa.array(batch.patch_positions.reshape(-1), type=pa.int16()),
    )
    columns = {
        DATASET: _dictionary(key.dataset, rows),
        TASK: _dictionary(key.task, rows),
        EPISODE_ID: pa.array(
            list(batch.row_episode_ids) if batch.row_episode_ids is not None else [key.episode_id] * rows,
            pa.string(),
        ),
        SEQUENCE_INDEX: pa.array(batch.sequence_index, pa.int32()),
        NUM_TOKENS: pa.array(batch.num_tokens, pa.int32()),
        TOKENS: _rows_of(batch.tokens, pa.int32(), offsets),
        MODALITY: _rows_of(batch.modality, pa.int8(), offsets),
        LOSS_MASK: _rows_of(batch.loss_mask, pa.bool_(), offsets),
        LOCAL_POSITIONS: _rows_of(batch.local_positions, pa.int16(), offsets),
        TIMESTEP: _rows_of(batch.timestep, pa.int32(), offsets),
        IS_PROMPT: _rows_of(batch.is_prompt, pa.bool_(), offsets),
        PROMPT_EPISODE_ID: pa.array(list(batch.prompt_episode_id), pa.string()),
        PATCH_PIXELS: pa.ListArray.from_arrays(row_patches, pixels),
        PATCH_POSITIONS: positions,
    }
    if SOURCE_KEYS in schema.names:
        columns[SOURCE_KEYS] = pa.array([list(k) for k in batch.source_keys or ((),) * rows], pa.list_(pa.string()))
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def stable_detail(detail: str) -> str:
    """`detail` without the memory addresses of Python reprs (`<... object at 0x7f...>`)."""
    return without_addresses(detail)


def rejects_record_batch(rejects: Sequence[Reject]) -> pa.RecordBatch:
    """Rejects as rows of `REJECTS_SCHEMA`, in the given order (details: `stable_detail`)."""
    columns = {
        DATASET: [r.dataset for r in rejects],
        TASK: [r.task for r in rejects],
        EPISODE_ID: [r.episode_id for r in rejects],
        SOURCE_FILE: [r.source_file for r in rejects],
        REASON: [r.reason for r in rejects],
        FIELD: [r.field for r in rejects],
        DETAIL: [stable_detail(r.detail) for r in rejects],
    }
    return pa.RecordBatch.from_arrays(
        [pa.array(columns[f.name], f.type) for f in REJECTS_SCHEMA], schema=REJECTS_SCHEMA
    )


def reject_sort_key(reject: Reject) -> tuple[str, str, str, str, str]:
    """Deterministic order of a task's rejects (they arrive in no particular order)."""
    return (reject.source_file, reject.episode_id or "", reject.reason, reject.field or "", reject.detail)


@dataclasses.dataclass(frozen=True)
class ShardEntry:
    """A closed shard waiting in its temporary place; `path` is final and relative.

    `bytes` and `sha256` are those of the file at `temp_path`, measured while it was
    written (moving it does not change them).
    """

    kind: str  # SEQUENCES_DIR or REJECTS_DIR
    path: str
    temp_path: str
    dataset: str
    task: str
    rows: int
    tokens: int
    bytes: int
    sha256: str


def shard_path(kind: str, dataset: str, task: str, work_item: int, shard: int) -> str:
    """The final relative path of a shard: `<kind>/<dataset>/<task>/part-....parquet`."""
    name = SHARD_NAME_FORMAT.format(work_item=work_item, shard=shard)
    return relative_path(kind, safe_component(dataset), safe_component(task), name)


class ShardWriter:
    """Rows of one (kind, dataset, task, work item) into consecutive shards.

    Rows are buffered up to one row group; shards close at row-group boundaries.
    Memory: at most one row group of rows plus the Parquet writer's page buffers.
    """

    def __init__(
        self,
        *,
        kind: str,
        dataset: str,
        task: str,
        work_item: int,
        schema: pa.Schema,
        options: WriteOptions,
        attempt: str,
    ) -> None:
        self._kind, self._dataset, self._task = kind, dataset, task
        self._work_item, self._schema, self._options = work_item, schema, options
        self._attempt = attempt
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._shard = 0
        self._writer: pq.ParquetWriter | None = None
        self._file: HashingWriter | None = None
        self._rows = self._tokens = self._bytes = 0
        self._path = self._temp_path = ""

    def write(self, batch: pa.RecordBatch) -> list[ShardEntry]:
        """Buffer `batch`; returns the shards this closed."""
        if batch.num_rows:
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
        closed: list[ShardEntry] = []
        with self._no_space_cleanup():
            while self._pending_rows >= self._next_group_rows():
                closed += self._flush(self._next_group_rows())
        return closed

    def close(self) -> list[ShardEntry]:
        """Write what is buffered and close the open shard."""
        closed: list[ShardEntry] = []
        with self._no_space_cleanup():
            while self._pending_rows:
                closed += self._flush(min(self._pending_rows, self._next_group_rows()))
            if self._writer is not None:
                closed.append(self._close_shard())
        return closed

    @contextlib.contextmanager
    def _no_space_cleanup(self) -> Any:
        """A full disk: remove the partial shard (best effort) and say so in one line."""
        try:
            yield
        except OSError as e:
            if not is_no_space(e):
                raise
            path = self._temp_path or self._options.output_dir
            self._discard_partial()
            if isinstance(e, NoSpaceLeftError):
                raise
            raise no_space_error(path) from e

    def _discard_partial(self) -> None:
        if self._writer is not None:
            self._writer.is_open = False  # its footer cannot be written: never try again
        with contextlib.suppress(OSError, ValueError):
            if self._file is not None:
                self._file.close()
        self._writer = self._file = None
        if self._temp_path:
            fs, path = fsspec.core.url_to_fs(self._temp_path)
            with contextlib.suppress(OSError):
                fs.rm(path)

    def _next_group_rows(self) -> int:
        return min(self._options.row_group_rows, self._options.rows_per_shard - self._rows)

    def _open_shard(self) -> None:
        self._path = shard_path(self._kind, self._dataset, self._task, self._work_item, self._shard)
        self._temp_path = path_under(
            self._options.output_dir, TMP_DIR, self._kind, self._attempt, *self._path.split("/")
        )
        fs, path = fsspec.core.url_to_fs(self._temp_path)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self._file = HashingWriter(fs.open(path, "wb"))
        self._writer = pq.ParquetWriter(
            self._file,
            self._schema,
            compression=self._options.compression,
            compression_level=self._options.compression_level,
            use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in self._schema.names],
            # Statistics of the scalar columns only: min/max over every token of the list
            # columns helps no reader and costs ~10% of writing.
            write_statistics=[f.name for f in self._schema if not pa.types.is_list(f.type)],
            store_schema=True,
        )
        self._rows = self._tokens = self._bytes = 0

    def _flush(self, rows: int) -> list[ShardEntry]:
        table = pa.Table.from_batches(self._pending, schema=self._schema)
        group, rest = table.slice(0, rows), table.slice(rows)
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows
        if self._writer is None:
            self._open_shard()
        group = group.combine_chunks()
        self._writer.write_table(group, row_group_size=rows)  # type: ignore[union-attr]
        self._rows += rows
        self._bytes += group.nbytes
        if NUM_TOKENS in group.column_names:
            self._tokens += int(pc.sum(group[NUM_TOKENS]).as_py() or 0)
        if self._rows >= self._options.rows_per_shard or self._bytes >= self._options.max_shard_bytes:
            return [self._close_shard()]
        return []

    def _close_shard(self) -> ShardEntry:
        self._writer.close()  # type: ignore[union-attr]
        file = self._file
        file.close()  # type: ignore[union-attr]
        self._writer = self._file = None
        entry = ShardEntry(
            kind=self._kind,
            path=self._path,
            temp_path=self._temp_path,
            dataset=self._dataset,
            task=self._task,
            rows=self._rows,
            tokens=self._tokens,
            bytes=file.size,  # type: ignore[union-attr]
            sha256=file.sha256,  # type: ignore[union-attr]
        )
        self._shard += 1
        self._rows = self._tokens = self._bytes = 0
        self._temp_path = ""  # closed and reported: never a partial file to discard
        return entry


def shard_metadata(path: str) -> dict[bytes, bytes]:
    """The schema metadata of a written shard (for checks and readers)."""
    return dict(pq.read_schema(path).metadata or {})


def decode_metadata(metadata: Mapping[bytes, bytes]) -> dict[str, Any]:
    """Shard schema metadata as JSON values (layout, fields) and text."""
    return {
        META_LAYOUT.decode(): json.loads(metadata[META_LAYOUT]),
        META_FIELDS.decode(): json.loads(metadata[META_FIELDS]),
        META_IMAGE_NORMALIZATION.decode(): metadata[META_IMAGE_NORMALIZATION].decode(),
        META_SEQUENCE_LENGTH.decode(): int(metadata[META_SEQUENCE_LENGTH]),
    }
