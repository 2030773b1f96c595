"""Modality inference from TFDS features, and the override spec file of `rlds:<dir>`.

TensorFlow-free: `planning/features.py` turns a TFDS FeaturesDict into `FeatureInfo`s (one per
leaf, addressed by its path from the feature root, e.g. `steps/observation/image`), and
everything here works on those.

Inference rules (spec section 2), for a step field under `observation` or `action`:
Image -> image; Text -> text; integer or bool tensor -> discrete; float tensor ->
continuous mu_law (actions too: nothing on disk declares them bounded, a spec file may
say `encoding = "linear"`).

Spec file (TOML; `--rlds_spec=path` or `<dir>/gato_spec.toml`), every key optional:

    task = "my_task"                 # task name (default "<tfds name>/<config>")
    order_key = ["episode_id"]       # episode-level fields giving collection order
    return = "sum_rewards"           # or "episode_return" (default: that field if present)
    local_position_table = 512

    [fields."observation/image"]    # a step field path (below `steps`)
    modality = "image"               # image | text | discrete | continuous
    size = [64, 64]                  # images: resize to (height, width) instead of padding
    [fields."action"]
    modality = "continuous"
    encoding = "linear"              # continuous: mu_law | linear
    offset = 0                       # discrete: added to values to bring them into [0, 1024)
    loss = true                      # override the default loss mask of the field
"""

from __future__ import annotations

import dataclasses
import tomllib
from typing import Any, Mapping

from schemas.fields import ACTION, OBSERVATION, PATH_SEPARATOR, STEPS, FieldSpec
from schemas.vocab import Encoding, Modality

SPEC_FILE_NAME = "gato_spec.toml"

# --- Feature kinds: what a TFDS leaf feature is, reduced to what tokenization needs. ---
KIND_TENSOR = "tensor"  # tfds.features.Tensor / Scalar / ClassLabel (scalar = shape ())
KIND_IMAGE = "image"
KIND_TEXT = "text"
KINDS = (KIND_TENSOR, KIND_IMAGE, KIND_TEXT)

# --- Where an episode's return comes from (spec section 4). ---
RETURN_EPISODE_RETURN = "episode_return"
RETURN_SUM_REWARDS = "sum_rewards"
RETURN_SOURCES = (RETURN_EPISODE_RETURN, RETURN_SUM_REWARDS)

_INTEGER_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)
_FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """One leaf feature as stored: kind, numpy dtype name, per-element shape.

    `shape` excludes the steps axis; None as a whole means "any shape" (only in expected
    features of the registry), None inside means an unknown dimension.
    """

    kind: str
    dtype: str
    shape: tuple[int | None, ...] | None = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown feature kind {self.kind!r}; known: {KINDS}")

    def matches(self, found: FeatureInfo) -> bool:
        """Whether `found` (from disk) satisfies this expected feature."""
        if self.kind != found.kind or self.dtype != found.dtype:
            return False
        return self.shape is None or tuple(self.shape) == tuple(found.shape or ())

    def __str__(self) -> str:
        shape = "any shape" if self.shape is None else f"shape {tuple(self.shape)}"
        return f"{self.kind}({self.dtype}, {shape})"


def step_path(field_path: str) -> str:
    """`observation/image` -> `steps/observation/image` (feature path of a step field)."""
    return STEPS + PATH_SEPARATOR + field_path


def tokenized_fields(features: Mapping[str, FeatureInfo]) -> dict[str, FeatureInfo]:
    """The step fields that get tokenized (under observation/action), keyed by field path."""
    prefix = STEPS + PATH_SEPARATOR
    out = {}
    for path, info in features.items():
        if not path.startswith(prefix):
            continue
        field = path[len(prefix) :]
        role = field.split(PATH_SEPARATOR, 1)[0]
        if role in (OBSERVATION, ACTION):
            out[field] = info
    return dict(sorted(out.items()))


def infer_field_spec(field: str, info: FeatureInfo) -> FieldSpec:
    """The default FieldSpec of a step field from its feature (rules in the module doc)."""
    if info.kind == KIND_IMAGE:
        return FieldSpec(Modality.IMAGE)
    if info.kind == KIND_TEXT:
        return FieldSpec(Modality.TEXT)
    if info.dtype in _INTEGER_DTYPES:
        return FieldSpec(Modality.DISCRETE)
    if info.dtype in _FLOAT_DTYPES:
        return FieldSpec(Modality.CONTINUOUS, encoding=Encoding.MU_LAW)
    if info.dtype in ("string", "object", "str", "bytes"):
        return FieldSpec(Modality.TEXT)
    raise ValueError(
        f"field {field!r}: cannot infer a modality for {info}; "
        f"declare it in a {SPEC_FILE_NAME} [fields.{field!r}] section"
    )


@dataclasses.dataclass(frozen=True)
class FieldOverride:
    """A spec file's `[fields."<path>"]` table: any subset of a FieldSpec's settings."""

    modality: Modality | None = None
    encoding: Encoding | None = None
    offset: int | None = None
    image_size: tuple[int, int] | None = None
    loss: bool | None = None

    def apply(self, base: FieldSpec) -> FieldSpec:
        """`base` with the given settings replaced; a modality change drops stale settings."""
        modality = self.modality if self.modality is not None else base.modality
        changed = modality is not base.modality
        encoding = self.encoding if self.encoding is not None else (
            None if changed else base.encoding
        )
        if modality is Modality.CONTINUOUS and encoding is None:
            encoding = Encoding.MU_LAW
        return FieldSpec(
            modality,
            encoding=encoding,
            offset=self.offset if self.offset is not None else (0 if changed else base.offset),
            image_size=self.image_size
            if self.image_size is not None
            else (None if changed else base.image_size),
            loss=self.loss if self.loss is not None else base.loss,
        )


@dataclasses.dataclass(frozen=True)
class RldsOverrides:
    """A parsed spec file. None / empty means "infer"."""

    task: str | None = None
    order_key: tuple[str, ...] | None = None
    return_source: str | None = None
    local_position_table: int | None = None
    fields: tuple[tuple[str, FieldOverride], ...] = ()

    @property
    def field_overrides(self) -> dict[str, FieldOverride]:
        return dict(self.fields)


_TOP_KEYS = {"task", "order_key", "return", "local_position_table", "fields"}
_FIELD_KEYS = {"modality", "encoding", "offset", "size", "loss"}


def parse_spec(text: str, *, source: str = "<spec>") -> RldsOverrides:
    """Parse a spec file's TOML text; every mistake is a ValueError naming `source` and key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: not valid TOML: {e}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    task = _typed(data, "task", str, source)
    order_key = data.get("order_key")
    if order_key is not None:
        if isinstance(order_key, str):
            order_key = [order_key]
        if not isinstance(order_key, list) or not all(isinstance(k, str) for k in order_key):
            raise ValueError(f"{source}: order_key must be a list of field names, got {order_key!r}")
        order_key = tuple(order_key)
    return_source = _typed(data, "return", str, source)
    if return_source is not None and return_source not in RETURN_SOURCES:
        raise ValueError(
            f"{source}: return = {return_source!r}; allowed: {list(RETURN_SOURCES)}"
        )
    table = _typed(data, "local_position_table", int, source)
    if table is not None and table < 2:
        raise ValueError(f"{source}: local_position_table must be at least 2, got {table}")
    fields_table = data.get("fields", {})
    if not isinstance(fields_table, dict):
        raise ValueError(f"{source}: [fields] must be a table of field paths")
    fields = tuple(
        (path, _parse_field(path, body, source)) for path, body in sorted(fields_table.items())
    )
    return RldsOverrides(
        task=task,
        order_key=order_key,
        return_source=return_source,
        local_position_table=table,
        fields=fields,
    )


def _typed(data: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
        raise ValueError(f"{source}: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _parse_field(path: str, body: Any, source: str) -> FieldOverride:
    where = f"{source}: [fields.{path!r}]"
    if not isinstance(body, dict):
        raise ValueError(f"{where} must be a table")
    unknown = set(body) - _FIELD_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}")
    modality = body.get("modality")
    if modality is not None:
        allowed = [m.name.lower() for m in (Modality.IMAGE, Modality.TEXT, Modality.DISCRETE, Modality.CONTINUOUS)]
        if modality not in allowed:
            raise ValueError(f"{where}: modality {modality!r}; allowed: {allowed}")
        modality = Modality[modality.upper()]
    encoding = body.get("encoding")
    if encoding is not None:
        try:
            encoding = Encoding(encoding)
        except ValueError:
            raise ValueError(
                f"{where}: encoding {encoding!r}; allowed: {[e.value for e in Encoding]}"
            ) from None
    offset = _typed(body, "offset", int, where)
    size = body.get("size")
    if size is not None:
        if (
            not isinstance(size, list)
            or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        ):
            raise ValueError(f"{where}: size must be [height, width] of positive ints, got {size!r}")
        size = (size[0], size[1])
    loss = _typed(body, "loss", bool, where)
    return FieldOverride(modality=modality, encoding=encoding, offset=offset, image_size=size, loss=loss)


def resolve_fields(
    features: Mapping[str, FeatureInfo],
    *,
    overrides: Mapping[str, FieldOverride],
    source: str = "<spec>",
) -> dict[str, FieldSpec]:
    """Inferred FieldSpecs of every tokenized step field, with overrides applied.

    An override naming a field that is not on disk is an error (a typo would otherwise be
    silently ignored). FieldSpec's own checks reject impossible combinations.
    """
    found = tokenized_fields(features)
    unknown = sorted(set(overrides) - set(found))
    if unknown:
        raise ValueError(
            f"{source}: [fields] names {unknown}, not step fields of the dataset; "
            f"its fields are {sorted(found)}"
        )
    specs = {}
    for field, info in found.items():
        override = overrides.get(field)
        try:
            if override is None:
                specs[field] = infer_field_spec(field, info)
            elif override.modality is not None:
                # The declared modality wins even where inference would have failed.
                specs[field] = override.apply(_default_spec(override.modality))
            else:
                specs[field] = override.apply(infer_field_spec(field, info))
        except ValueError as e:
            raise ValueError(f"{source}: field {field!r}: {e}") from None
    return specs


def _default_spec(modality: Modality) -> FieldSpec:
    encoding = Encoding.MU_LAW if modality is Modality.CONTINUOUS else None
    return FieldSpec(modality, encoding=encoding)
