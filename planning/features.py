"""A task's features on disk against what the job needs (start-up, no Beam).

- `describe_features`: a TFDS FeaturesDict flattened to {path: FeatureInfo} (kind, dtype,
  shape; `steps` leaves per step). It also checks that the reader can decode every
  feature (`formats.tf_example.check_decodable`): an unsupported feature is one start-up
  error, not one error per worker.
- `feature_mismatches`: the differences from a registry entry's expected features, one
  readable line each. Every expected path (or fnmatch pattern) must be present and
  match; every tokenized step field on disk must be expected (an unexpected observation
  would otherwise fail every episode at tokenization).
- `registry_fields`: a task's FieldSpecs, the registry's plus inferred ones for the
  entry's `infer_roles`; `field_shapes`: each tokenized field's per-timestep shape.

tensorflow_datasets is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Mapping

from formats.tf_example import check_decodable, raw_features
from schemas.datasets import DatasetSpec
from schemas.fields import PATH_SEPARATOR, FieldSpec
from schemas.rlds_spec import (
    KIND_IMAGE,
    KIND_TENSOR,
    KIND_TEXT,
    FeatureInfo,
    infer_field_spec,
    step_path,
    tokenized_fields,
)


def registry_fields(spec: DatasetSpec, *, features: Mapping[str, FeatureInfo]) -> dict[str, FieldSpec]:
    """The FieldSpecs of one task: the registry's, plus inferred ones for `infer_roles`."""
    fields = dict(spec.field_specs)
    for field, info in tokenized_fields(features).items():
        role = field.split(PATH_SEPARATOR, 1)[0]
        if role in spec.infer_roles and field not in fields:
            fields[field] = infer_field_spec(field, info)
    return dict(sorted(fields.items()))


def feature_mismatches(spec: DatasetSpec, *, found: Mapping[str, FeatureInfo]) -> list[str]:
    """Human-readable differences between the registry's expected features and `found`.

    Every expected path (or pattern) must be present and match; every tokenized step field
    on disk must be expected (an unexpected observation would otherwise fail every episode
    at tokenization).
    """
    problems = []
    for pattern, expected in spec.expected_features:
        matches = [p for p in found if fnmatch.fnmatchcase(p, pattern)]
        if not matches:
            problems.append(f"field {pattern!r} missing (expected {expected})")
        for path in matches:
            if not expected.matches(found[path]):
                problems.append(f"field {path!r}: expected {expected}, found {found[path]}")
    patterns = [p for p, _ in spec.expected_features]
    for field in tokenized_fields(found):
        path = step_path(field)
        if not any(fnmatch.fnmatchcase(path, p) for p in patterns):
            problems.append(f"field {path!r} ({found[path]}) is not in the registry entry")
    return problems


def describe_features(features: Any) -> dict[str, FeatureInfo]:
    """Flatten a TFDS FeaturesDict to {path: FeatureInfo}; `steps` leaves are per step."""
    import tensorflow_datasets as tfds  # lazy: plan_work's callers need not pay for TF

    out: dict[str, FeatureInfo] = {}

    def walk(feature: Any, path: str) -> None:
        F = tfds.features
        if isinstance(feature, F.FeaturesDict):
            for key, sub in feature.items():
                walk(sub, f"{path}{PATH_SEPARATOR}{key}" if path else key)
        elif isinstance(feature, F.Dataset):
            walk(feature.feature, path)
        elif isinstance(feature, F.Image):
            out[path] = FeatureInfo(KIND_IMAGE, _dtype_name(feature.np_dtype), tuple(feature.shape))
        elif isinstance(feature, F.Text):
            out[path] = FeatureInfo(KIND_TEXT, "string", ())
        elif isinstance(feature, F.Tensor):  # Scalar and ClassLabel included
            out[path] = FeatureInfo(KIND_TENSOR, _dtype_name(feature.np_dtype), tuple(feature.shape))
        else:
            raise ValueError(
                f"feature {path!r} has type {type(feature).__name__}, which this pipeline "
                "does not read (supported: FeaturesDict, Dataset, Image, Text, Tensor)"
            )

    walk(features, "")
    check_decodable(raw_features(features))  # a start-up error, not one per worker
    return out


def _dtype_name(dtype: Any) -> str:
    import numpy as np

    dt = np.dtype(dtype)
    return "string" if dt.kind in "OSU" else dt.name


def field_shapes(features: Mapping[str, FeatureInfo]) -> dict[str, tuple[int | None, ...]]:
    """{field path: per-timestep shape} of the tokenized step fields (text: `()`)."""
    return {field: tuple(info.shape or ()) for field, info in tokenized_fields(features).items()}
