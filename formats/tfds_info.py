"""A TFDS builder dir's metadata, read through fsspec: dataset_info.json and features.json.

`read_builder_info(builder_dir)` gives what the job needs of a builder dir: its name,
config and version, its features (a TFDS `FeaturesDict`, for the decoder and the
registry checks) and each split's shard files and `shardLengths`. It reads the two JSON
files itself, with fsspec, instead of calling `tfds.builder_from_directory`: TFDS reads
through etils.epath, which sends `gs://` to `tf.io.gfile` whenever TensorFlow is
installed (a second storage stack, deaf to `STORAGE_EMULATOR_HOST`, and a TensorFlow
import on every worker). Here every path is an fsspec URL or a local path, like every
other file the job and the reader touch (`formats/files.py`).

The parsing is TFDS's own: the `DatasetInfo` proto from JSON, the shard file names from
TFDS's `ShardedFileTemplate`, the features from `FeatureConnector.from_json` (or, for
data written without features.json, from the proto's features), so the paths and features
equal what `tfds.builder_from_directory(...).info` gives (tested). TFDS is imported
here, at import time, never first inside `planning.tfds_dirs.load_infos`'s threads (a
first import racing in threads fails with "... is not a package").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import tensorflow_datasets as tfds
from google.protobuf import json_format
from tensorflow_datasets.core import naming
from tensorflow_datasets.core.proto import dataset_info_pb2

from formats.files import join_url, read_bytes, url_exists

DATASET_INFO_FILE = "dataset_info.json"  # where TFDS keeps names, splits and `shardLengths`
FEATURES_FILE = "features.json"
_DEFAULT_FILE_FORMAT = "tfrecord"  # TFDS's default when dataset_info.json names none


@dataclasses.dataclass(frozen=True)
class SplitFiles:
    """One split's shard files (URLs under the builder dir, in shard order) and their records."""

    filepaths: tuple[str, ...]
    shard_lengths: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class BuilderInfo:
    """What the job reads of a builder dir; `path` is the dir as given (URL or path)."""

    path: str
    name: str
    config: str
    version: str
    splits: Mapping[str, SplitFiles]
    features: Any = dataclasses.field(repr=False)  # tfds.features.FeaturesDict


def _parse_info(builder_dir: str) -> Any:
    text = read_bytes(join_url(builder_dir, DATASET_INFO_FILE)).decode("utf-8")
    return json_format.Parse(text, dataset_info_pb2.DatasetInfo(), ignore_unknown_fields=True)


def _names(builder_dir: str, proto: Any) -> tuple[str, str, str]:
    """(name, config, version) of a parsed dataset_info.json, falling back to the dir names
    `<name>/[<config>/]<version>` as TFDS lays them out."""
    parts = builder_dir.rstrip("/").split("/")
    return proto.name or parts[-2], proto.config_name, proto.version or parts[-1]


def read_info_names(builder_dir: str) -> tuple[str, str, str]:
    """(name, config, version) from dataset_info.json (`_names`)."""
    return _names(builder_dir, _parse_info(builder_dir))


def _split_files(builder_dir: str, proto: Any, split: Any) -> SplitFiles:
    template = naming.ShardedFileTemplate(
        data_dir=".",  # unused: only relative names are built here
        template=split.filepath_template or naming.DEFAULT_FILENAME_TEMPLATE,
        dataset_name=proto.name,
        split=split.name,
        filetype_suffix=proto.file_format or _DEFAULT_FILE_FORMAT,
    )
    lengths = tuple(int(n) for n in split.shard_lengths)
    names = (
        template.relative_filepath(shard_index=i, num_shards=len(lengths)) for i in range(len(lengths))
    )
    return SplitFiles(filepaths=tuple(join_url(builder_dir, n) for n in names), shard_lengths=lengths)


def read_features(builder_dir: str, proto: Any = None) -> Any:
    """The builder dir's TFDS `FeaturesDict`: features.json, else the proto's features."""
    path = join_url(builder_dir, FEATURES_FILE)
    if url_exists(path):
        return tfds.features.FeatureConnector.from_json(json.loads(read_bytes(path)))
    proto = proto if proto is not None else _parse_info(builder_dir)
    if not proto.HasField("features"):
        raise ValueError(f"{builder_dir}: no {FEATURES_FILE} and no features in {DATASET_INFO_FILE}")
    return tfds.features.FeatureConnector.from_proto(proto.features)


def read_builder_info(builder_dir: str) -> BuilderInfo:
    """The metadata of the builder dir at `builder_dir` (module doc). Raises OSError or
    ValueError for missing or malformed files."""
    proto = _parse_info(builder_dir)
    name, config, version = _names(builder_dir, proto)
    return BuilderInfo(
        path=builder_dir,
        name=name,
        config=config,
        version=version,
        splits={s.name: _split_files(builder_dir, proto, s) for s in proto.splits},
        features=read_features(builder_dir, proto),
    )
