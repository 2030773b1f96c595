"""Writers for the vision-language samples, each reproducing a public tool's layout with
nothing that varies between runs (no timestamps, fixed tar owner, mode and mtime)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TAR_MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z: tar members carry no wall-clock time
TAR_OWNER = "bigdata"  # webdataset's TarWriter default user and group
TAR_MODE = 0o444  # webdataset's TarWriter default mode
PARQUET_SHARD = "train-00000-of-00001.parquet"  # as `datasets` names a one-file split


def hf_value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


HF_IMAGE: dict[str, str] = {"_type": "Image"}
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # `datasets`' Image


def hf_list(feature: dict[str, Any]) -> dict[str, Any]:
    return {"feature": feature, "_type": "List"}


def write_parquet(path: Path, columns: dict[str, tuple[pa.DataType, list[Any]]], features: dict[str, Any]) -> None:
    """One Parquet file as `datasets` writes it: the columns in order, and the features in
    the `huggingface` schema metadata (datasets >= 4 spells lists `List`)."""
    schema = pa.schema([(name, dtype) for name, (dtype, _) in columns.items()])
    schema = schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    table = pa.table({name: values for name, (_, values) in columns.items()}, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A tar of `members` in order, as webdataset's TarWriter writes (owner `bigdata`,
    mode 0444) but with a fixed mtime so reruns are byte-identical."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, TAR_MODE
            info.uname = info.gname = TAR_OWNER
            tar.addfile(info, io.BytesIO(data))


def sample_members(key: str, parts: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """One WebDataset sample: `<key>.<ext>` members in sorted extension order (TarWriter's)."""
    return [(f"{key}.{ext}", parts[ext]) for ext in sorted(parts)]


