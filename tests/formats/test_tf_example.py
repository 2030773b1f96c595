"""formats/tf_example.py: tf.train.Example decoding without TensorFlow.

The reference is TFDS's TensorFlow parser of the same raw view: every record of every
bundled sample dataset must decode identically.
"""

from __future__ import annotations

import pickle
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
from transforms.rlds_rules import CORRUPT_RECORD, DTYPE_MISMATCH, SHAPE_MISMATCH
from tests.tfds_fixtures import write_rlds_dataset

# The RLDS sample builders (episodes with steps). coco_captions is read by formats/vl_tfds.py,
# which parses its examples flat: `image` and `image/id` cannot nest into one dict.
SAMPLE_BUILDERS = sorted(
    str(p.parent) for p in Path(SAMPLES_DIR, "data").glob("*/*/*/dataset_info.json")
    if p.parts[-4] != "coco_captions"
)


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
    with pytest.raises(UndecodableRecord, match=r"feature 'id' is declared int64 but the record holds bytes values \(bytes_list\)"):
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


ints = lambda *v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))  # noqa: E731
floats = lambda *v: tf.train.Feature(float_list=tf.train.FloatList(value=v))  # noqa: E731


def _lying() -> tfds.features.FeaturesDict:
    """features.json says the action is int32 and the joints float32."""
    return tfds.features.FeaturesDict({
        "episode_id": np.int64,
        "steps": tfds.features.Dataset({
            "action": tfds.features.Tensor(shape=(2,), dtype=np.int32),
            "joints": tfds.features.Tensor(shape=(3,), dtype=np.float32),
            "reward": np.float32,
        }),
    })


def test_a_dtype_the_records_do_not_hold_is_refused_as_tensorflow_refuses_it() -> None:
    record = _example(episode_id=ints(7), **{"steps/action": floats(0.5, 1.5), "steps/joints": floats(1, 2, 3),
                                             "steps/reward": floats(1)})
    with pytest.raises(tf.errors.InvalidArgumentError, match="action"):  # TensorFlow's parser
        tf_decode(_lying(), record)
    with pytest.raises(UndecodableRecord) as caught:
        ExampleDecoder(_lying())(record)
    error = caught.value
    assert str(error) == "feature 'steps/action' is declared int32 but the record holds float32 values (float_list)"
    assert (error.reason, error.field, error.episode_fields) == (DTYPE_MISMATCH, "action", {"episode_id": 7})
    floats_as_ints = _example(episode_id=ints(7), **{"steps/action": ints(1, 2), "steps/joints": ints(1, 2, 3),
                                                     "steps/reward": floats(1)})
    with pytest.raises(UndecodableRecord, match="'steps/joints' is declared float32 but the record holds int64"):
        ExampleDecoder(_lying())(floats_as_ints)
    restored = pickle.loads(pickle.dumps(error))
    assert (str(restored), restored.reason, restored.field, restored.episode_fields) == (
        str(error), DTYPE_MISMATCH, "action", {"episode_id": 7})


@pytest.mark.parametrize("joints, reason, message", [
    (floats(1, 2, 3, 4), SHAPE_MISMATCH, r"feature 'steps/joints': 4 values do not fit shape \(-1, 3\)"),
    (ints(1, 2, 3), DTYPE_MISMATCH, "feature 'steps/joints' is declared float32 but the record holds int64"),
    (None, CORRUPT_RECORD, "feature 'steps/joints' is missing"),
])
def test_a_light_decoder_checks_the_step_fields_it_does_not_convert(joints: Any, reason: str, message: str) -> None:
    """Pass 1 decodes only flags and rewards; a record the full decoder refuses it refuses too."""
    features = {"episode_id": ints(7), "steps/action": ints(1, 2), "steps/reward": floats(1)}
    if joints is not None:
        features["steps/joints"] = joints
    record = _example(**features)
    light = ExampleDecoder(raw_features(_lying()), step_fields=["reward"])
    for decode in (ExampleDecoder(raw_features(_lying())), light):
        with pytest.raises(UndecodableRecord, match=message) as caught:
            decode(record)
        assert (caught.value.reason, caught.value.field, caught.value.episode_fields) == (reason, "joints", {"episode_id": 7})
    good = _example(**{**features, "steps/joints": floats(1, 2, 3)})
    assert light(good) == {"episode_id": 7, "steps": {"reward": np.array([1], np.float32)}}


def test_a_light_decoder_checks_the_size_of_encoded_elements_it_skips() -> None:
    features = tfds.features.FeaturesDict({"steps": tfds.features.Dataset({
        "pos": tfds.features.Tensor(shape=(2,), dtype=np.float32, encoding="bytes"),
        "reward": np.float32})})
    blobs = lambda *b: tf.train.Feature(bytes_list=tf.train.BytesList(value=list(b)))  # noqa: E731
    good, short = np.array([1.5, 2.5], np.float32).tobytes(), np.array([1.5], np.float32).tobytes()
    light = ExampleDecoder(features, step_fields=["reward"])
    assert light(_example(**{"steps/pos": blobs(good, good), "steps/reward": floats(0, 1)}))["steps"].keys() == {"reward"}
    with pytest.raises(UndecodableRecord, match=r"feature 'steps/pos', element 1: 4 bytes, expected 8") as caught:
        light(_example(**{"steps/pos": blobs(good, short), "steps/reward": floats(0, 1)}))
    assert (caught.value.reason, caught.value.episode_fields) == (SHAPE_MISMATCH, {})


def test_a_bad_episode_level_feature_leaves_the_others_in_the_error() -> None:
    decode = ExampleDecoder(tfds.features.FeaturesDict({
        "episode_id": np.int64, "episode_return": np.float32,
        "steps": tfds.features.Dataset({"reward": np.float32})}))
    with pytest.raises(UndecodableRecord) as caught:
        decode(_example(episode_id=ints(3), episode_return=floats(1, 2), **{"steps/reward": floats(1)}))
    assert (caught.value.field, caught.value.episode_fields) == ("episode_return", {"episode_id": 3})
    with pytest.raises(UndecodableRecord) as caught:
        decode(b"\xff\xff garbage")
    assert (caught.value.reason, caught.value.field, caught.value.episode_fields) == (CORRUPT_RECORD, None, None)
