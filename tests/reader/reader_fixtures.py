"""Builds small finished outputs (Parquet shards + manifest.json) the way the writer does.

Every row is recognizable from its content: row i of a source has episode_id
"<dataset>|<task>|<i>", sequence_index i, tokens[j] = (i * 7 + j) % 1000 for j < num_tokens
and the pad id after, and `patch_count(i)` image patches whose pixels are all
(i + k) % 256 for patch k. Tests use this to check that a batch row is the row it claims.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from formats.parquet_shards import sequence_schema
from schemas import output as out
from schemas.vocab import GATO, IMAGE_NORMALIZATION, PATCH_SIZE, Modality, VocabLayout

SourceKey = tuple[str, str]


def default_patch_count(i: int) -> int:
    return i % 3


def episode_id(dataset: str, task: str, i: int) -> str:
    return f"{dataset}|{task}|{i}"


def expected_tokens(i: int, length: int, num_tokens: int, layout: VocabLayout = GATO) -> np.ndarray:
    tokens = np.full(length, layout.pad, dtype=np.int32)
    tokens[:num_tokens] = (i * 7 + np.arange(num_tokens)) % 1000
    return tokens


def sequences_table(
    dataset: str,
    task: str,
    indices: np.ndarray,
    *,
    length: int,
    layout: VocabLayout = GATO,
    channels: int = 3,
    patch_count: Callable[[int], int] = default_patch_count,
) -> pa.Table:
    """Rows `indices` of one source, in SEQUENCE_SCHEMA."""
    rows: dict[str, list] = {name: [] for name in out.SEQUENCE_SCHEMA.names}
    for i in (int(x) for x in indices):
        patches = patch_count(i)
        num_tokens = max(1, length - 1 - i % 4)
        tokens = expected_tokens(i, length, num_tokens, layout)
        modality = np.where(np.arange(length) < num_tokens, int(Modality.DISCRETE), int(Modality.PAD)).astype(np.int8)
        tokens[:patches] = layout.image_placeholder
        modality[:patches] = int(Modality.IMAGE)
        rows[out.DATASET].append(dataset)
        rows[out.TASK].append(task)
        rows[out.EPISODE_ID].append(episode_id(dataset, task, i))
        rows[out.SEQUENCE_INDEX].append(i)
        rows[out.NUM_TOKENS].append(num_tokens)
        rows[out.TOKENS].append(tokens)
        rows[out.MODALITY].append(modality)
        rows[out.LOSS_MASK].append(np.arange(length) % 2 == 1)
        rows[out.LOCAL_POSITIONS].append((np.arange(length) % 512).astype(np.int16))
        rows[out.TIMESTEP].append(np.where(np.arange(length) < num_tokens, np.arange(length) // 4, -1).astype(np.int32))
        rows[out.IS_PROMPT].append(np.zeros(length, dtype=bool))
        rows[out.PROMPT_EPISODE_ID].append(None)
        rows[out.PATCH_PIXELS].append(
            [bytes([(i + k) % 256]) * (PATCH_SIZE * PATCH_SIZE * channels) for k in range(patches)]
        )
        rows[out.PATCH_POSITIONS].append(
            np.asarray([v for k in range(patches) for v in (k, k + 1, 0, 127)], dtype=np.int16)
        )
    return pa.Table.from_pydict(rows, schema=out.SEQUENCE_SCHEMA)


def write_output(
    root: str | os.PathLike[str],
    sources: Mapping[SourceKey, int],
    *,
    length: int = 32,
    row_group_size: int = 8,
    rows_per_shard: int = 20,
    layout: VocabLayout = GATO,
    channels: int | Mapping[SourceKey, int] = 3,
    weights: Mapping[str, object] | None = None,
    patch_count: Callable[[int], int] = default_patch_count,
    manifest: bool = True,
) -> str:
    """Write a finished output with `sources[(dataset, task)]` rows each; returns its directory.

    `weights` is the manifest's sampling_weights (default: every dataset weight 1.0, no task weights).
    Every shard carries the schema metadata the writer gives it (layout, fields, sequence length).
    """
    root = os.fspath(root)
    metadata = sequence_schema(layout=layout, fields={}, sequence_length=length).metadata
    shards = []
    for (dataset, task), n in sources.items():
        for part, start in enumerate(range(0, max(n, 1), rows_per_shard)):  # n = 0: one empty shard
            indices = np.arange(start, min(n, start + rows_per_shard))
            c = channels if isinstance(channels, int) else channels[(dataset, task)]
            table = sequences_table(
                dataset, task, indices, length=length, layout=layout, channels=c, patch_count=patch_count
            ).replace_schema_metadata(metadata)
            relative = f"sequences/{dataset}/{task}/part-{part:05d}.parquet"
            path = os.path.join(root, *relative.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # Written beside, then renamed into place, as the writer does (a rebuilt output
            # replaces files: a reader's open handles keep the bytes they opened).
            pq.write_table(table, path + ".tmp", row_group_size=row_group_size)
            os.replace(path + ".tmp", path)
            with open(path, "rb") as f:
                data = f.read()
            shards.append(
                {
                    out.S_PATH: relative,
                    out.S_DATASET: dataset,
                    out.S_TASK: task,
                    out.S_ROWS: len(indices),
                    out.S_TOKENS: int(pa.compute.sum(table.column(out.NUM_TOKENS)).as_py() or 0),
                    out.S_BYTES: len(data),
                    out.S_SHA256: hashlib.sha256(data).hexdigest(),
                }
            )
    if weights is None:
        weights = {d: {"weight": 1.0, "tasks": {}} for d, _ in sources}
    config = {"sequence_length": length, "vocabulary": layout.name}
    document = {
        out.M_FORMAT_VERSION: out.MANIFEST_FORMAT_VERSION,
        out.M_CONFIG: config,
        out.M_CONFIG_HASH: hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        out.M_VOCABULARY: layout.to_metadata(),
        out.M_SEQUENCE_LENGTH: length,
        out.M_IMAGE_NORMALIZATION: IMAGE_NORMALIZATION,
        out.M_FIELDS: {},
        out.M_SAMPLING_WEIGHTS: weights,
        out.M_SHARDS: shards,
        out.M_REJECTS: [],
        out.M_STATS: {},
    }
    if manifest:
        with open(os.path.join(root, out.MANIFEST_FILE), "w") as f:
            json.dump(document, f)
    return root
