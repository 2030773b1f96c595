"""tf.train.Example -> nested dict of numpy arrays, without TensorFlow, equal to TFDS's parser.

`ExampleDecoder` parses a record with protobuf, converts each flat feature to numpy with
its TFDS dtype and shape (tensors stored as raw or zlib bytes per element become one
array per episode), and nests the flat keys ("steps/observation") again. The result
equals TensorFlow's `deserialize_example(...).numpy()` (a test checks every record of the
bundled samples): strings stay `bytes` in object arrays (never fixed-width `S`, which
would drop trailing NUL bytes), scalars are numpy scalars of the feature's dtype. A
record that is not an Example of the expected features raises `UndecodableRecord` (a
ValueError naming the feature); its framing is intact, so a reader can go on.

The decoder works on a *view* of a TFDS FeaturesDict with the same serialized layout:
`raw_features` turns the `steps` Dataset into a Sequence (whole-episode arrays instead of
a nested tf.data.Dataset) and each Image into its PNG bytes (one string per step, left
undecoded); `light_features` keeps only the episode-level features and the named step
fields, so the other keys of the Example are never converted. `check_decodable` names the
first feature the decoder cannot handle, so planning fails at start-up, not on a worker.
tensorflow_datasets is imported lazily, for its feature connectors only; TensorFlow never
is (why: `formats/tfrecord.py`).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Collection
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from schemas.fields import STEPS


class UndecodableRecord(ValueError):
    """A framed record that is not a tf.train.Example of the expected features."""


def raw_features(features: Any) -> Any:
    """The raw view of a TFDS FeaturesDict, with the same serialized layout: the `steps`
    Dataset becomes a Sequence (whole-episode arrays), an Image its PNG bytes (one per step)."""
    import tensorflow_datasets as tfds

    F = tfds.features
    if isinstance(features, F.Dataset):
        return F.Sequence(raw_features(features.feature))
    if isinstance(features, F.FeaturesDict):
        return F.FeaturesDict({k: raw_features(v) for k, v in features.items()})
    if isinstance(features, F.Image):
        # Same serialized info (one tf.string per image): the PNG bytes, undecoded.
        return F.Tensor(shape=(), dtype=np.object_)
    return features


def light_features(features: Any, step_fields: Collection[str]) -> Any:
    """The raw view restricted to the episode-level features and the top-level step
    fields in `step_fields`: the same serialized keys, so unrequested keys are not parsed."""
    import tensorflow_datasets as tfds

    F = tfds.features
    raw = raw_features(features)
    kept = {k: v for k, v in raw.items() if k != STEPS}
    if STEPS in raw:
        steps = raw[STEPS]
        kept[STEPS] = F.Sequence(
            F.FeaturesDict({k: v for k, v in steps.feature.items() if k in step_fields})
        )
    return F.FeaturesDict(kept)


def _leaves(features: Any, prefix: str = "") -> dict[str, Any]:
    """{flat key: leaf feature connector}, keys as TFDS flattens them ("steps/observation")."""
    import tensorflow_datasets as tfds

    F = tfds.features
    if isinstance(features, F.FeaturesDict):
        out: dict[str, Any] = {}
        for name, feature in features.items():
            out.update(_leaves(feature, f"{prefix}{name}/"))
        return out
    if isinstance(features, F.Sequence):
        return _leaves(features.feature, prefix)
    return {prefix.rstrip("/"): features}


def check_decodable(features: Any) -> None:
    """Raises ValueError naming the first feature `ExampleDecoder` cannot decode.

    Supported: what RLDS datasets store, i.e. tensor-like leaves (Tensor, Scalar, Text,
    ClassLabel; plain, bytes- or zlib-encoded) at the episode level or in one `steps`
    Sequence, with fixed shapes (an episode-level plain tensor may have a variable first
    dimension). Other connectors (a decoded Image has been replaced by its PNG bytes in
    the raw view), ragged and nested sequences are not.
    """
    _decodable_leaves(features)


def _decodable_leaves(features: Any) -> list[tuple[str, Any, Any]]:
    """(flat key, leaf connector, serialized info) of every leaf; `check_decodable`'s errors."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import utils
    from tensorflow_datasets.core.features.tensor_feature import Encoding

    specs = utils.flatten_nest_dict(features.get_serialized_info())
    leaves = []
    for key, leaf in _leaves(features).items():
        info = specs.get(key)
        if not isinstance(leaf, tfds.features.Tensor) or info is None:
            raise ValueError(
                f"feature {key!r} is a {type(leaf).__name__}: the reader decodes tensors, "
                "scalars, text and class labels only"
            )
        shape = tuple(leaf.shape)
        variable_first = info.sequence_rank == 0 and leaf._encoding == Encoding.NONE  # noqa: SLF001
        fixed = shape[1:] if variable_first else shape
        if info.sequence_rank > 1 or None in fixed:
            raise ValueError(
                f"feature {key!r} has shape {shape} with sequence rank {info.sequence_rank}: "
                "ragged and nested-sequence features are not supported by the reader"
            )
        leaves.append((key, leaf, info))
    return leaves


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """How one flat feature is stored (`serialized`) and what it decodes to."""

    key: str
    serialized_dtype: np.dtype
    serialized_shape: tuple[int, ...]  # -1 for the time axis
    dtype: np.dtype
    shape: tuple[int, ...]  # one element's shape (after the time axis, if any)
    zlib: bool
    encoded: bool  # stored as raw bytes (optionally zlib-compressed) of each element


class ExampleDecoder:
    """Serialized tf.train.Example -> nested dict of numpy arrays (module doc).

    `features`: a TFDS FeaturesDict (the reader's raw or light view); keys of the Example
    that it does not name are never converted.
    """

    def __init__(self, features: Any) -> None:
        from tensorflow_datasets.core.features.tensor_feature import Encoding
        from tensorflow_datasets.proto import tf_example_pb2

        self._leaves = []
        for key, leaf, info in _decodable_leaves(features):
            self._leaves.append(
                _Leaf(
                    key=key,
                    serialized_dtype=_np_dtype(info.np_dtype),
                    serialized_shape=tuple(-1 if d is None else d for d in info.shape),
                    dtype=_np_dtype(leaf.np_dtype),
                    shape=tuple(leaf.shape),
                    zlib=leaf._encoding == Encoding.ZLIB,  # noqa: SLF001 (TFDS has no public accessor)
                    encoded=leaf._encoding != Encoding.NONE,  # noqa: SLF001
                )
            )
        self._parse = tf_example_pb2.Example.FromString

    def __call__(self, record: bytes) -> dict[str, Any]:
        """Raises UndecodableRecord naming the feature when the record does not parse."""
        try:
            example = self._parse(record)
        except DecodeError as e:
            raise UndecodableRecord(f"not a tf.train.Example ({e})") from None
        feature_map = example.features.feature
        nested: dict[str, Any] = {}
        for leaf in self._leaves:
            if leaf.key not in feature_map:
                raise UndecodableRecord(f"feature {leaf.key!r} is missing")
            value = _decode_leaf(leaf, _to_numpy(leaf, feature_map[leaf.key]))
            *parents, name = leaf.key.split("/")
            node = nested
            for part in parents:
                node = node.setdefault(part, {})
            node[name] = value
        return nested


def _np_dtype(dtype: Any) -> np.dtype:
    return np.dtype(object) if dtype in (np.object_, np.bytes_, np.str_, object) else np.dtype(dtype)


def _to_numpy(leaf: _Leaf, feature: Any) -> np.ndarray:
    """The flat values of one feature, in its serialized dtype and shape."""
    kind = feature.WhichOneof("kind")
    values: Any = () if kind is None else getattr(feature, kind).value
    dtype = leaf.serialized_dtype
    if dtype == object:
        if kind not in (None, "bytes_list"):
            raise UndecodableRecord(f"feature {leaf.key!r}: expected bytes, found {kind}")
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)  # whole bytes: a fixed-width S array would drop trailing NULs
    elif kind == "float_list" or (kind is None and dtype.kind == "f"):
        array = np.asarray(values, dtype=np.float32)
    elif kind == "int64_list" or kind is None:
        array = np.asarray(values, dtype=np.int64)
    else:
        raise UndecodableRecord(f"feature {leaf.key!r}: expected numbers, found {kind}")
    if array.dtype != dtype:
        # As TensorFlow's parser then cast: int64 -> bool/uint8/..., float32 -> float64;
        # uint64 is stored bit-cast to int64.
        array = array.view(np.uint64) if dtype == np.uint64 else array.astype(dtype)
    try:
        return array.reshape(leaf.serialized_shape)
    except ValueError:
        raise UndecodableRecord(
            f"feature {leaf.key!r}: {array.size} values do not fit shape {leaf.serialized_shape}"
        ) from None


def _decode_leaf(leaf: _Leaf, array: np.ndarray) -> Any:
    """Encoded tensors -> their arrays; 0-d -> a numpy scalar (bytes for strings), as
    TensorFlow's `.numpy()` gives."""
    if not leaf.encoded:
        return array[()] if array.ndim == 0 else array
    blobs = array.reshape(-1)
    if leaf.zlib:
        try:
            blobs = [zlib.decompress(b) for b in blobs]
        except zlib.error as e:
            raise UndecodableRecord(f"feature {leaf.key!r} does not decompress: {e}") from None
    size = leaf.dtype.itemsize * math.prod(leaf.shape)
    for step, blob in enumerate(blobs):
        if len(blob) != size:
            raise UndecodableRecord(
                f"feature {leaf.key!r}, element {step}: {len(blob)} bytes, expected {size} "
                f"({leaf.dtype} {leaf.shape})"
            )
    # One buffer for the whole episode: one array instead of one per step (writable, as
    # TensorFlow's arrays are).
    joined = np.frombuffer(bytearray().join(blobs), dtype=leaf.dtype).reshape(array.shape + leaf.shape)
    return joined[()] if joined.ndim == 0 else joined
