"""formats/tf_example.py: tf.train.Example decoding without TensorFlow.

The reference is TFDS's TensorFlow parser of the same raw view: every record of every
bundled sample dataset must decode identically.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from planning.options import SAMPLES_DIR
from formats.tfds_shards import RETURN_STEP_FIELDS
from formats.tf_example import light_features, raw_features
from formats.tf_example import ExampleDecoder, UndecodableRecord, check_decodable
from tests.tfds_fixtures import write_rlds_dataset

SAMPLE_BUILDERS = sorted(str(p.parent) for p in Path(SAMPLES_DIR, "data").glob("*/*/*/dataset_info.json"))


def tf_records(path: str) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def tf_decode(features: Any, record: bytes) -> Any:
    """TFDS's TensorFlow parser of the same view: what the reader decoded before."""
    return tf.nest.map_structure(lambda t: t.numpy(), features.deserialize_example(tf.constant(record)))


def assert_same(ours: Any, theirs: Any, path: str = "") -> None:
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), path
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}/{key}")
        return
    assert type(ours) is type(theirs), (path, type(ours), type(theirs))
    if isinstance(theirs, np.ndarray):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (path, ours.dtype, theirs.dtype)
        if theirs.dtype == object:
            assert list(ours.reshape(-1)) == list(theirs.reshape(-1)), path
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=path)
    else:
        assert ours == theirs, path


# --- Decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("builder_dir", SAMPLE_BUILDERS, ids=lambda d: "/".join(Path(d).parts[-3:-1]))
def test_every_sample_record_decodes_as_tensorflow_decodes_it(builder_dir: str) -> None:
    features = tfds.builder_from_directory(builder_dir).info.features
    views = [raw_features(features), light_features(features, RETURN_STEP_FIELDS)]
    decoders = [ExampleDecoder(view) for view in views]
    shards = sorted(Path(builder_dir).glob("*.tfrecord-*"))
    assert shards
    for shard in shards:
        for record in tf_records(str(shard)):
            for view, decode in zip(views, decoders):
                assert_same(decode(record), tf_decode(view, record))


def test_strings_keep_trailing_nul_bytes_and_scalars_are_numpy_scalars(tmp_path: Path) -> None:
    features = tfds.features.FeaturesDict({
        "name": tfds.features.Text(),
        "weight": np.float64,
        "big": tfds.features.Tensor(shape=(), dtype=np.uint64),
        "tags": tfds.features.Tensor(shape=(None, 2), dtype=np.int32),
        "steps": tfds.features.Dataset({
            "blob": tfds.features.Tensor(shape=(), dtype=np.object_),
            "pos": tfds.features.Tensor(shape=(2,), dtype=np.float32, encoding="zlib"),
            "flag": np.bool_,
            "small": tfds.features.Tensor(shape=(3,), dtype=np.uint8),
        }),
    })
    episode = {
        "name": "café\x00", "weight": 0.1, "big": 2**64 - 1, "tags": [[3, 1], [4, 1], [5, 9]],
        "steps": [{"blob": b"ab\x00\x00", "pos": [1.5, -2.0], "flag": True, "small": [0, 7, 255]},
                  {"blob": b"\x00", "pos": [3.0, 4.0], "flag": False, "small": [1, 2, 3]}],
    }
    builder_dir = write_rlds_dataset(tmp_path, "odd", "c", features, [episode])
    [shard] = sorted(builder_dir.glob("*.tfrecord-*"))
    [record] = tf_records(str(shard))
    view = raw_features(tfds.builder_from_directory(str(builder_dir)).info.features)
    ours = ExampleDecoder(view)(record)
    assert_same(ours, tf_decode(view, record))
    assert list(ours["steps"]["blob"]) == [b"ab\x00\x00", b"\x00"]
    assert ours["name"] == "café\x00".encode() and ours["big"] == np.uint64(2**64 - 1)
    assert ours["tags"].dtype == np.int32 and ours["tags"].tolist() == [[3, 1], [4, 1], [5, 9]]
    assert type(ours["weight"]) is np.float64 and ours["weight"] == np.float64(np.float32(0.1))
    np.testing.assert_array_equal(ours["steps"]["pos"], np.array([[1.5, -2.0], [3.0, 4.0]], np.float32))
    assert ours["steps"]["small"].dtype == np.uint8 and ours["steps"]["flag"].dtype == bool


def _decoder() -> ExampleDecoder:
    return ExampleDecoder(tfds.features.FeaturesDict({
        "id": np.int64,
        "steps": tfds.features.Dataset({"obs": tfds.features.Tensor(shape=(2,), dtype=np.float32)}),
    }))


def _example(**features: Any) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def test_bad_records_name_the_feature() -> None:
    decode = _decoder()
    ints = lambda *v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))  # noqa: E731
    floats = lambda *v: tf.train.Feature(float_list=tf.train.FloatList(value=v))  # noqa: E731
    assert decode(_example(id=ints(4), **{"steps/obs": floats(1, 2, 3, 4)}))["steps"]["obs"].shape == (2, 2)
    with pytest.raises(UndecodableRecord, match="not a tf.train.Example"):
        decode(b"\xff\xff\xff garbage")
    with pytest.raises(UndecodableRecord, match="feature 'steps/obs' is missing"):
        decode(_example(id=ints(4)))
    with pytest.raises(UndecodableRecord, match=r"feature 'steps/obs': 3 values do not fit shape \(-1, 2\)"):
        decode(_example(id=ints(4), **{"steps/obs": floats(1, 2, 3)}))
    with pytest.raises(UndecodableRecord, match="feature 'id': expected numbers, found bytes_list"):
        decode(_example(id=tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
                        **{"steps/obs": floats(1, 2)}))
    with pytest.raises(UndecodableRecord, match=r"feature 'id': 2 values do not fit shape \(\)"):
        decode(_example(id=ints(4, 5), **{"steps/obs": floats(1, 2)}))


def test_encoded_tensors_decode_to_one_writable_array_and_check_their_size() -> None:
    decode = ExampleDecoder(tfds.features.FeaturesDict({"steps": tfds.features.Dataset({
        "pos": tfds.features.Tensor(shape=(2,), dtype=np.float32, encoding="zlib")})}))
    blobs = lambda *b: tf.train.Feature(bytes_list=tf.train.BytesList(value=list(b)))  # noqa: E731
    good = zlib.compress(np.array([1.5, 2.5], np.float32).tobytes())
    pos = decode(_example(**{"steps/pos": blobs(good, good)}))["steps"]["pos"]
    np.testing.assert_array_equal(pos, [[1.5, 2.5], [1.5, 2.5]])
    assert pos.flags.writeable
    assert decode(_example(**{"steps/pos": blobs()}))["steps"]["pos"].shape == (0, 2)
    short = zlib.compress(np.array([1.5], np.float32).tobytes())
    with pytest.raises(UndecodableRecord, match=r"feature 'steps/pos', element 1: 4 bytes, expected 8"):
        decode(_example(**{"steps/pos": blobs(good, short)}))
    with pytest.raises(UndecodableRecord, match="feature 'steps/pos' does not decompress"):
        decode(_example(**{"steps/pos": blobs(b"not zlib")}))


def test_unsupported_features_are_refused_by_name() -> None:
    ragged = tfds.features.FeaturesDict({"steps": tfds.features.Dataset({
        "points": tfds.features.Tensor(shape=(None, 3), dtype=np.float32)})})
    with pytest.raises(ValueError, match="feature 'steps/points' has shape \\(None, 3\\)"):
        check_decodable(ragged)
    image = tfds.features.FeaturesDict({"frame": tfds.features.Image(shape=(4, 4, 1))})
    with pytest.raises(ValueError, match="feature 'frame' is a Image"):
        check_decodable(image)
