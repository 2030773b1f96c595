"""tf.train.Example -> nested dict of numpy arrays, without TensorFlow, equal to TFDS's parser.

`ExampleDecoder` parses a record with protobuf, converts each flat feature to numpy with
its TFDS dtype and shape (tensors stored as raw or zlib bytes per element become one
array per episode), and nests the flat keys ("steps/observation") again. The result
equals TensorFlow's `deserialize_example(...).numpy()` (a test checks every record of the
bundled samples): strings stay `bytes` in object arrays (never fixed-width `S`, which
would drop trailing NUL bytes), scalars are numpy scalars of the feature's dtype. A
record that is not an Example of the expected features raises `UndecodableRecord` (a
ValueError naming the feature, with a reason code and the episode-level fields that did
decode, so a reject can name the episode); its framing is intact, so a reader can go on.
As TensorFlow's parser, the decoder never casts across kinds: a feature declared int32
whose record holds floats (or the reverse) is `dtype_mismatch`, values that do not fill
the declared shape `shape_mismatch`.

The decoder works on a *view* of a TFDS FeaturesDict with the same serialized layout:
`raw_features` turns the `steps` Dataset into a Sequence (whole-episode arrays instead of
a nested tf.data.Dataset) and each Image into its PNG bytes (one string per step, left
undecoded); `light_features` keeps only the episode-level features and the named step
fields, so the other keys of the Example are never converted; `ExampleDecoder(raw,
step_fields=...)` does the same and also checks the skipped fields cheaply (presence,
kind, value count, element sizes), so it refuses exactly the records the full decoder does. `check_decodable` names the
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

from formats.packed_fields import packed_floats, packed_varints
from schemas.fields import STEPS
from transforms.rlds_rules import CORRUPT_RECORD, DTYPE_MISMATCH, SHAPE_MISMATCH


class UndecodableRecord(ValueError):
    """A framed record that is not a tf.train.Example of the expected features.

    `reason`: `corrupt_record` (not an Example, a feature missing or not decompressing),
    `dtype_mismatch` or `shape_mismatch`; `field`: the feature's path (inside `steps` for a
    step field), None when no feature is to blame; `episode_fields`: the nested
    episode-level features that did decode (so a reject can name the episode's id), None
    when none were tried.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = CORRUPT_RECORD,
        field: str | None = None,
        episode_fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.episode_fields = episode_fields

    def __reduce__(self) -> tuple[Any, ...]:
        return (_undecodable, (str(self), self.reason, self.field, self.episode_fields))


def _undecodable(message: str, reason: str, field: str | None, episode_fields: Any) -> UndecodableRecord:
    return UndecodableRecord(message, reason=reason, field=field, episode_fields=episode_fields)


def _field(key: str) -> str:
    """A flat feature key as a field path: step fields without the `steps/` prefix."""
    prefix = STEPS + "/"
    return key[len(prefix):] if key.startswith(prefix) else key


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
    that it does not name are never converted. `step_fields`: decode only the episode-level
    features and these top-level step fields; the other step fields are *checked*, not
    converted (present, of the declared dtype, their value count fitting the declared
    shape, encoded elements of the right size), so that a record this decoder accepts is
    one the full decoder accepts too (pass 1 and pass 2 reach one verdict).

    The episode-level features are decoded first: when a step field fails, the error
    carries them (`UndecodableRecord.episode_fields`), so the reject can name the episode.
    """

    def __init__(self, features: Any, *, step_fields: Collection[str] | None = None) -> None:
        from tensorflow_datasets.core.features.tensor_feature import Encoding
        from tensorflow_datasets.proto import tf_example_pb2

        leaves = []
        for key, leaf, info in _decodable_leaves(features):
            leaves.append(
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
        prefix = STEPS + "/"
        self._episode = [leaf for leaf in leaves if not leaf.key.startswith(prefix)]
        steps = [leaf for leaf in leaves if leaf.key.startswith(prefix)]
        wanted = (lambda leaf: True) if step_fields is None else (
            lambda leaf: leaf.key[len(prefix):].split("/", 1)[0] in step_fields
        )
        self._steps = [leaf for leaf in steps if wanted(leaf)]
        self._checked = [leaf for leaf in steps if not wanted(leaf)]
        checked = {leaf.key for leaf in self._checked}
        self._order = [leaf.key for leaf in leaves if leaf.key not in checked]  # the nesting order
        self._parse = tf_example_pb2.Example.FromString

    def __call__(self, record: bytes) -> dict[str, Any]:
        """Raises UndecodableRecord naming the feature when the record does not parse."""
        try:
            example = self._parse(record)
        except DecodeError as e:
            raise UndecodableRecord(f"not a tf.train.Example ({e})") from None
        feature_map = example.features.feature
        values: dict[str, Any] = {}
        error: UndecodableRecord | None = None
        for leaf in self._episode:
            try:
                values[leaf.key] = _decode_leaf(leaf, _to_numpy(leaf, _feature(leaf, feature_map)))
            except UndecodableRecord as e:
                error = error or e
        try:
            if error is not None:
                raise error
            for leaf in self._steps:
                values[leaf.key] = _decode_leaf(leaf, _to_numpy(leaf, _feature(leaf, feature_map)))
            for leaf in self._checked:
                _check_leaf(leaf, _feature(leaf, feature_map))
        except UndecodableRecord as e:
            episode = _nest({leaf.key: values[leaf.key] for leaf in self._episode if leaf.key in values})
            raise UndecodableRecord(str(e), reason=e.reason, field=e.field, episode_fields=episode) from None
        return _nest({key: values[key] for key in self._order})


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"steps/observation": v} -> {"steps": {"observation": v}}, in the given order."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, name = key.split("/")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    return nested


def _feature(leaf: _Leaf, feature_map: Any) -> Any:
    if leaf.key not in feature_map:
        raise UndecodableRecord(f"feature {leaf.key!r} is missing", field=_field(leaf.key))
    return feature_map[leaf.key]


def _np_dtype(dtype: Any) -> np.dtype:
    return np.dtype(object) if dtype in (np.object_, np.bytes_, np.str_, object) else np.dtype(dtype)


# What each kind of tf.train.Feature holds, as TensorFlow's parser names it.
_FOUND = {"bytes_list": "bytes", "float_list": "float32", "int64_list": "int64"}


def _check_kind(leaf: _Leaf, kind: str | None) -> None:
    """The feature's list kind must be the one its serialized dtype is parsed from (as
    TensorFlow's parser requires: it never casts floats to ints or back)."""
    dtype = leaf.serialized_dtype
    expected = "bytes_list" if dtype == object else "float_list" if dtype.kind == "f" else "int64_list"
    if kind is None or kind == expected:
        return
    declared = f"{leaf.dtype} (stored as bytes)" if leaf.encoded else str(leaf.dtype)
    raise UndecodableRecord(
        f"feature {leaf.key!r} is declared {declared} but the record holds {_FOUND.get(kind, kind)} "
        f"values ({kind})",
        reason=DTYPE_MISMATCH,
        field=_field(leaf.key),
    )


def _check_count(leaf: _Leaf, count: int) -> None:
    """`count` values must fill the serialized shape (-1: any number of steps)."""
    shape = leaf.serialized_shape
    per = math.prod(d for d in shape if d != -1)
    fits = (count % per == 0 if per else count == 0) if -1 in shape else count == per
    if not fits:
        raise UndecodableRecord(
            f"feature {leaf.key!r}: {count} values do not fit shape {shape}",
            reason=SHAPE_MISMATCH,
            field=_field(leaf.key),
        )


def _check_leaf(leaf: _Leaf, feature: Any) -> None:
    """What `_to_numpy` and `_decode_leaf` would refuse, without converting the values."""
    kind = feature.WhichOneof("kind")
    _check_kind(leaf, kind)
    values: Any = () if kind is None else getattr(feature, kind).value
    _check_count(leaf, len(values))
    if leaf.encoded:
        _element_bytes(leaf, list(values))


def _to_numpy(leaf: _Leaf, feature: Any) -> np.ndarray:
    """The flat values of one feature, in its serialized dtype and shape."""
    kind = feature.WhichOneof("kind")
    _check_kind(leaf, kind)
    values: Any = () if kind is None else getattr(feature, kind).value
    _check_count(leaf, len(values))
    dtype = leaf.serialized_dtype
    if dtype == object:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)  # whole bytes: a fixed-width S array would drop trailing NULs
    elif kind is None:
        array = np.zeros(0, dtype=np.float32 if dtype.kind == "f" else np.int64)
    elif dtype.kind == "f":
        array = packed_floats(getattr(feature, kind).SerializeToString())
    else:
        array = packed_varints(getattr(feature, kind).SerializeToString())
    if array.dtype != dtype:
        # As TensorFlow's parser then casts: int64 -> bool/uint8/..., float32 -> float64;
        # uint64 is stored bit-cast to int64.
        array = array.view(np.uint64) if dtype == np.uint64 else array.astype(dtype)
    return array.reshape(leaf.serialized_shape)


def _element_bytes(leaf: _Leaf, blobs: Any) -> list[bytes]:
    """The raw bytes of each encoded element (decompressed), each checked for its size."""
    if leaf.zlib:
        try:
            blobs = list(map(zlib.decompress, blobs))
        except zlib.error as e:
            raise UndecodableRecord(
                f"feature {leaf.key!r} does not decompress: {e}", field=_field(leaf.key)
            ) from None
    size = leaf.dtype.itemsize * math.prod(leaf.shape)
    # One C pass over the lengths; only a wrong one (the first, named) costs Python.
    sizes = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    wrong = np.flatnonzero(sizes != size)
    if wrong.size:
        step = int(wrong[0])
        raise UndecodableRecord(
            f"feature {leaf.key!r}, element {step}: {len(blobs[step])} bytes, expected {size} "
            f"({leaf.dtype} {leaf.shape})",
            reason=SHAPE_MISMATCH,
            field=_field(leaf.key),
        )
    return list(blobs)


def _decode_leaf(leaf: _Leaf, array: np.ndarray) -> Any:
    """Encoded tensors -> their arrays; 0-d -> a numpy scalar (bytes for strings), as
    TensorFlow's `.numpy()` gives."""
    if not leaf.encoded:
        return array[()] if array.ndim == 0 else array
    blobs = _element_bytes(leaf, array.reshape(-1))
    # One buffer for the whole episode: one array instead of one per step (writable, as
    # TensorFlow's arrays are).
    joined = np.frombuffer(bytearray().join(blobs), dtype=leaf.dtype).reshape(array.shape + leaf.shape)
    return joined[()] if joined.ndim == 0 else joined
