"""The row-group index: every (dataset, task) source and the row groups that hold it.

Row groups are the unit of reading. The index is built once from the manifests and the
Parquet footers (no row data is read), so the whole read order can be computed from it.
Each footer is checked against its manifest entry: the columns, the row count, and the
layout and sequence length in the schema metadata (`reader.manifest_checks`); a file
listed by two outputs is refused (its rows would be read twice per epoch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
import numpy as np
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from reader.finished_output import Output
from reader.manifest_checks import check_shard_metadata
from schemas import output as out

SourceKey = tuple[str, str]  # (dataset, task)
_FOOTER_THREADS = 16  # footers are tiny, remote reads are latency-bound


@dataclasses.dataclass(frozen=True)
class ShardFile:
    """One Parquet shard: its filesystem and path, the output that lists it, and its listed sha256."""

    fs: fsspec.AbstractFileSystem
    path: str
    output_url: str
    sha256: str | None = None  # hex digest from the manifest (None if it lists none)
    output: Output | None = None  # the output that lists it (its manifest is re-checked on every open)

    def open(self) -> pq.ParquetFile:
        # Local paths go to pyarrow's native reader (memory-mapped, no Python file layer).
        if isinstance(self.fs, LocalFileSystem):
            return pq.ParquetFile(self.path, memory_map=True)
        return pq.ParquetFile(self.fs.open(self.path, "rb"))


@dataclasses.dataclass(frozen=True)
class Source:
    """One (dataset, task) and its row groups, in manifest order.

    Invariant: `units` index `Index.unit_file/unit_group/unit_rows`; `rows` is their sum.
    """

    dataset: str
    task: str
    units: np.ndarray  # int64 global unit ids
    rows: int

    @property
    def key(self) -> SourceKey:
        return (self.dataset, self.task)


@dataclasses.dataclass(frozen=True)
class Index:
    """Every shard file and row group of the opened outputs, grouped into sources."""

    files: tuple[ShardFile, ...]
    unit_file: np.ndarray  # int64 [U]: index into files
    unit_group: np.ndarray  # int64 [U]: row group within the file
    unit_rows: np.ndarray  # int64 [U]
    sources: tuple[Source, ...]


def _shard_entries(outputs: Sequence[Output], keep: set[SourceKey] | None) -> list[tuple[Output, Mapping[str, Any]]]:
    entries = []
    for o in outputs:
        for shard in o.shards:
            key = (str(shard[out.S_DATASET]), str(shard[out.S_TASK]))
            if keep is None or key in keep:
                entries.append((o, shard))
    return entries


def _row_groups(o: Output, shard: Mapping[str, Any]) -> tuple[ShardFile, list[int]]:
    sha = shard.get(out.S_SHA256)
    file = ShardFile(o.fs, o.shard_path(str(shard[out.S_PATH])), o.url, str(sha) if sha else None, o)
    try:
        meta = file.open().metadata
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{o.url}: shard {shard[out.S_PATH]!r} listed in the manifest cannot be opened as "
            f"Parquet ({e}); the output is incomplete or corrupt"
        ) from e
    schema = meta.schema.to_arrow_schema()
    lacking = [c for c in out.SEQUENCE_SCHEMA.names if c not in set(schema.names)]
    if lacking:
        raise ValueError(f"{o.url}: shard {shard[out.S_PATH]!r} lacks the columns {lacking}")
    check_shard_metadata(o.url, str(shard[out.S_PATH]), schema.metadata, o.manifest)
    rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    if sum(rows) != int(shard[out.S_ROWS]):
        raise ValueError(
            f"{o.url}: shard {shard[out.S_PATH]!r} holds {sum(rows)} rows but the manifest says "
            f"{shard[out.S_ROWS]}; the shard was changed or truncated after the job"
        )
    return file, rows


def build_index(outputs: Sequence[Output], keep: set[SourceKey] | None = None) -> Index:
    """Read every listed shard's footer (in parallel) and group row groups by source.

    `keep` limits the index to those sources (e.g. the ones with a positive weight).
    Sources are ordered by (dataset, task); a source listed by several outputs holds
    the row groups of all of them, in the order the outputs were given.
    """
    entries = _shard_entries(outputs, keep)
    with ThreadPoolExecutor(max_workers=_FOOTER_THREADS) as pool:
        opened = list(pool.map(lambda e: _row_groups(*e), entries))
    files: list[ShardFile] = []
    unit_file: list[int] = []
    unit_group: list[int] = []
    unit_rows: list[int] = []
    by_source: dict[SourceKey, list[int]] = {}
    listed_by: dict[str, str] = {}
    for (_, shard), (file, rows) in zip(entries, opened):
        key = (str(shard[out.S_DATASET]), str(shard[out.S_TASK]))
        url = file.fs.unstrip_protocol(file.path)
        if url in listed_by:  # one output lists a file once (`check_shard_entries`): two outputs do
            raise ValueError(
                f"shard {url} is listed by two outputs ({listed_by[url]} and {file.output_url}); its rows "
                "would be read twice per epoch: give each output once"
            )
        listed_by[url] = file.output_url
        file_id = len(files)
        files.append(file)
        for group, n in enumerate(rows):
            if n == 0:
                continue
            by_source.setdefault(key, []).append(len(unit_rows))
            unit_file.append(file_id)
            unit_group.append(group)
            unit_rows.append(n)
    rows_arr = np.asarray(unit_rows, dtype=np.int64)
    sources = tuple(
        Source(dataset=k[0], task=k[1], units=np.asarray(u, dtype=np.int64), rows=int(rows_arr[u].sum()))
        for k, u in sorted(by_source.items())
    )
    return Index(
        files=tuple(files),
        unit_file=np.asarray(unit_file, dtype=np.int64),
        unit_group=np.asarray(unit_group, dtype=np.int64),
        unit_rows=rows_arr,
        sources=sources,
    )


def listed_sources(outputs: Sequence[Output]) -> dict[SourceKey, int]:
    """Every (dataset, task) the manifests list, with its row count from the manifests."""
    counts: dict[SourceKey, int] = {}
    for o, shard in _shard_entries(outputs, None):
        key = (str(shard[out.S_DATASET]), str(shard[out.S_TASK]))
        counts[key] = counts.get(key, 0) + int(shard[out.S_ROWS])
    return counts
