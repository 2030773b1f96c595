"""planning/features.py: TFDS features flattened to FeatureInfo, differences from a registry
entry one readable line each, a task's field specs and per-timestep shapes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from planning.features import describe_features, feature_mismatches, field_shapes, registry_fields
from schemas.datasets import CONTROL_SUITE, METAWORLD
from schemas.fields import continuous, discrete
from schemas.rlds_spec import KIND_IMAGE, KIND_TENSOR, KIND_TEXT, FeatureInfo
from tests import tfds_fixtures as fx

F = tfds.features


def test_describe_features_flattens_every_leaf_with_kind_dtype_and_per_step_shape() -> None:
    described = describe_features(fx.novel_features())
    assert described == {
        "episode_id": FeatureInfo(KIND_TENSOR, "int64", ()),
        "steps/observation/camera/rgb": FeatureInfo(KIND_IMAGE, "uint8", (20, 24, 3)),
        "steps/observation/instruction": FeatureInfo(KIND_TEXT, "string", ()),
        "steps/observation/joints": FeatureInfo(KIND_TENSOR, "float32", (5,)),
        "steps/action/arm": FeatureInfo(KIND_TENSOR, "float32", (3,)),
        "steps/action/gripper": FeatureInfo(KIND_TENSOR, "int64", ()),
        "steps/reward": FeatureInfo(KIND_TENSOR, "float32", ()),
        "steps/discount": FeatureInfo(KIND_TENSOR, "float32", ()),
        "steps/is_first": FeatureInfo(KIND_TENSOR, "bool", ()),
        "steps/is_last": FeatureInfo(KIND_TENSOR, "bool", ()),
        "steps/is_terminal": FeatureInfo(KIND_TENSOR, "bool", ()),
    }


def test_class_labels_are_int64_tensors_and_undecodable_features_fail_at_start_up() -> None:
    labelled = F.FeaturesDict({"steps": F.Dataset({"action": F.ClassLabel(num_classes=4)})})
    assert describe_features(labelled) == {"steps/action": FeatureInfo(KIND_TENSOR, "int64", ())}
    ragged = F.FeaturesDict({"steps": F.Dataset({"observation": F.Tensor(shape=(None, 3), dtype=np.float32)})})
    with pytest.raises(ValueError, match="feature 'steps/observation' has shape \\(None, 3\\)"):
        describe_features(ragged)
    nested = F.FeaturesDict({"steps": F.Dataset({"observation": F.Sequence(F.Tensor(shape=(), dtype=np.float32))})})
    with pytest.raises(ValueError, match="feature 'steps/observation' has type Sequence"):
        describe_features(nested)


def test_metaworld_features_match_its_entry_and_differences_are_named() -> None:
    found = describe_features(fx.metaworld_features())
    assert feature_mismatches(METAWORLD, found=found) == []
    wrong = dict(found)
    wrong["steps/action"] = FeatureInfo(KIND_TENSOR, "float64", (4,))
    del wrong["steps/observation/state"]
    wrong["steps/observation/goal"] = FeatureInfo(KIND_TENSOR, "float32", (3,))
    # In the entry's (sorted) order of expected paths, then the unexpected fields.
    assert feature_mismatches(METAWORLD, found=wrong) == [
        "field 'steps/action': expected tensor(float32, shape (4,)), found tensor(float64, shape (4,))",
        "field 'steps/observation/state' missing (expected tensor(float32, shape (39,)))",
        "field 'steps/observation/goal' (tensor(float32, shape (3,))) is not in the registry entry",
    ]


def test_registry_fields_add_inferred_specs_for_the_infer_roles_only() -> None:
    found = {
        "steps/observation/position": FeatureInfo(KIND_TENSOR, "float32", (3,)),
        "steps/observation/mode": FeatureInfo(KIND_TENSOR, "int32", ()),
        "steps/action": FeatureInfo(KIND_TENSOR, "float32", (1,)),
        "steps/reward": FeatureInfo(KIND_TENSOR, "float32", ()),
    }
    # control_suite: actions from the registry (linear), observations inferred.
    assert registry_fields(CONTROL_SUITE, features=found) == {
        "action": continuous("linear"),
        "observation/mode": discrete(),
        "observation/position": continuous("mu_law"),
    }
    assert list(registry_fields(CONTROL_SUITE, features=found)) == ["action", "observation/mode", "observation/position"]
    # metaworld infers nothing: only its registry fields.
    assert registry_fields(METAWORLD, features=found) == METAWORLD.field_specs


def test_field_shapes_are_per_timestep_for_tokenized_fields_only() -> None:
    assert field_shapes(describe_features(fx.novel_features())) == {
        "action/arm": (3,),
        "action/gripper": (),
        "observation/camera/rgb": (20, 24, 3),
        "observation/instruction": (),
        "observation/joints": (5,),
    }
    assert field_shapes({"steps/observation": FeatureInfo(KIND_TENSOR, "float32", None)}) == {"observation": ()}
