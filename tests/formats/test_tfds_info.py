"""formats/tfds_info.py: a builder dir's metadata read through fsspec equals what TFDS's
own `builder_from_directory` reads, for local paths and object-store URLs alike."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
import tensorflow_datasets as tfds
from google.protobuf import json_format

from formats.tfds_info import read_builder_info, read_features, read_info_names
from planning.options import SAMPLES_DATA_DIR
from tests import tfds_fixtures as fx


def _sample_builder_dirs() -> list[Path]:
    return sorted(p.parent for p in Path(SAMPLES_DATA_DIR).glob("*/*/*/dataset_info.json"))


@pytest.mark.parametrize("builder_dir", _sample_builder_dirs(), ids=lambda p: "/".join(p.parts[-3:]))
def test_every_bundled_sample_reads_as_tfds_reads_it(builder_dir: Path) -> None:
    ours = read_builder_info(str(builder_dir))
    theirs = tfds.builder_from_directory(str(builder_dir)).info
    assert (ours.name, ours.config, ours.version) == (theirs.name, theirs.config_name or "", str(theirs.version))
    assert sorted(ours.splits) == sorted(theirs.splits.keys())
    for name, split in ours.splits.items():
        assert list(split.filepaths) == [str(p) for p in theirs.splits[name].filepaths]
        assert list(split.shard_lengths) == list(theirs.splits[name].shard_lengths)
    assert ours.features.to_json() == theirs.features.to_json()


def test_a_url_keeps_its_form_and_its_filesystem() -> None:
    source = _sample_builder_dirs()[0]
    url = "memory://data/" + "/".join(source.parts[-3:])
    fs = fsspec.filesystem("memory")
    try:
        for f in source.iterdir():
            fs.pipe(f"{url}/{f.name}", f.read_bytes())
        info = read_builder_info(url)
        assert all(p.startswith(url + "/") for p in info.splits["train"].filepaths)
        assert info.features.to_json() == read_features(str(source)).to_json()
    finally:
        fs.rm("memory://data", recursive=True)


def test_features_fall_back_to_the_dataset_info_proto_else_one_error(tmp_path: Path) -> None:
    builder = Path(fx.write_rlds_dataset(tmp_path, "ds", "c", fx.metaworld_features(),
                                         [fx.metaworld_episode(0, 2)]))
    features = read_features(str(builder))
    (builder / "features.json").unlink()
    with pytest.raises(ValueError, match="no features.json and no features in dataset_info.json"):
        read_features(str(builder))
    info = json.loads((builder / "dataset_info.json").read_text())
    info["features"] = json_format.MessageToDict(features.to_proto())
    (builder / "dataset_info.json").write_text(json.dumps(info))
    assert read_features(str(builder)).to_json() == features.to_json()


def test_names_fall_back_to_the_directory_names(tmp_path: Path) -> None:
    path = tmp_path / "robot" / "3.1.0"
    path.mkdir(parents=True)
    (path / "dataset_info.json").write_text("{}")
    assert read_info_names(str(path)) == ("robot", "", "3.1.0")
