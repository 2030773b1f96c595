"""schemas/rlds_spec.py: the rlds spec file and the field inference rules (no TensorFlow needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.fields import FieldSpec, continuous, discrete, image, text
from schemas.rlds_spec import (
    KIND_IMAGE,
    KIND_TENSOR,
    KIND_TEXT,
    RETURN_SUM_REWARDS,
    FeatureInfo,
    FieldOverride,
    RldsOverrides,
    infer_field_spec,
    parse_spec,
    resolve_fields,
)
from schemas.vocab import Encoding, Modality


@pytest.mark.parametrize(
    "info, expected",
    [
        (FeatureInfo(KIND_IMAGE, "uint8", (20, 24, 3)), image()),
        (FeatureInfo(KIND_TEXT, "string"), text()),
        (FeatureInfo(KIND_TENSOR, "int64"), discrete()),
        (FeatureInfo(KIND_TENSOR, "bool", (3,)), discrete()),
        (FeatureInfo(KIND_TENSOR, "uint8", (7, 7, 3)), discrete()),
        (FeatureInfo(KIND_TENSOR, "float32", (5,)), continuous("mu_law")),
        (FeatureInfo(KIND_TENSOR, "float64"), continuous("mu_law")),
    ],
)
def test_inference_rules(info: FeatureInfo, expected: FieldSpec) -> None:
    assert infer_field_spec("observation/x", info) == expected


def test_inference_rejects_unknown_dtypes() -> None:
    with pytest.raises(ValueError, match="observation/z.*complex64"):
        infer_field_spec("observation/z", FeatureInfo(KIND_TENSOR, "complex64"))


_SPEC = """
task = "stacking"
order_key = ["episode_id"]
return = "sum_rewards"
local_position_table = 1024

[fields."observation/camera/rgb"]
size = [32, 32]

[fields."action/arm"]
encoding = "linear"

[fields."observation/instruction"]
loss = true

[fields."action/gripper"]
offset = 2
"""

_FEATURES = {
    "episode_id": FeatureInfo(KIND_TENSOR, "int64"),
    "steps/observation/camera/rgb": FeatureInfo(KIND_IMAGE, "uint8", (20, 24, 3)),
    "steps/observation/instruction": FeatureInfo(KIND_TEXT, "string"),
    "steps/observation/joints": FeatureInfo(KIND_TENSOR, "float32", (5,)),
    "steps/action/arm": FeatureInfo(KIND_TENSOR, "float32", (3,)),
    "steps/action/gripper": FeatureInfo(KIND_TENSOR, "int64"),
    "steps/reward": FeatureInfo(KIND_TENSOR, "float32"),
    "steps/is_first": FeatureInfo(KIND_TENSOR, "bool"),
}


def test_spec_file_overrides_inferred_fields() -> None:
    overrides = parse_spec(_SPEC, source="gato_spec.toml")
    assert overrides.task == "stacking"
    assert overrides.order_key == ("episode_id",)
    assert overrides.return_source == RETURN_SUM_REWARDS
    assert overrides.local_position_table == 1024
    fields = resolve_fields(_FEATURES, overrides=overrides.field_overrides)
    assert fields == {
        "action/arm": continuous("linear"),
        "action/gripper": discrete(offset=2),
        "observation/camera/rgb": image((32, 32)),
        "observation/instruction": text(loss=True),
        "observation/joints": continuous("mu_law"),
    }


def test_spec_file_can_change_a_modality() -> None:
    overrides = parse_spec('[fields."observation/joints"]\nmodality = "discrete"\n')
    fields = resolve_fields(_FEATURES, overrides=overrides.field_overrides)
    assert fields["observation/joints"] == discrete()
    overrides = parse_spec('[fields."action/gripper"]\nmodality = "continuous"\n')
    assert resolve_fields(_FEATURES, overrides=overrides.field_overrides)["action/gripper"] == continuous()


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour = 1", "unknown keys \\['colour'\\]"),
        ("return = 'max'", "return = 'max'"),
        ("order_key = [1]", "order_key must be a list"),
        ("task = 3", "task must be a str"),
        ("local_position_table = 1", "at least 2"),
        ('[fields."action/arm"]\nencoding = "log"', "encoding 'log'"),
        ('[fields."action/arm"]\nmodality = "audio"', "modality 'audio'"),
        ('[fields."action/arm"]\nsize = [0, 3]', "size must be"),
        ('[fields."action/arm"]\nzoom = 2', "unknown keys \\['zoom'\\]"),
        ("task = ", "not valid TOML"),
    ],
)
def test_spec_file_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        parse_spec(text, source="my/gato_spec.toml")
    assert "my/gato_spec.toml" in str(e.value)


def test_override_of_a_missing_field_is_an_error() -> None:
    overrides = parse_spec('[fields."observation/jionts"]\nmodality = "discrete"\n')
    with pytest.raises(ValueError, match="observation/jionts.*observation/joints"):
        resolve_fields(_FEATURES, overrides=overrides.field_overrides)


def test_impossible_override_is_an_error_naming_the_field() -> None:
    overrides = parse_spec('[fields."observation/joints"]\nsize = [16, 16]\n')
    with pytest.raises(ValueError, match="observation/joints.*image_size"):
        resolve_fields(_FEATURES, overrides=overrides.field_overrides)


_modalities = st.sampled_from(["image", "text", "discrete", "continuous"])


@st.composite
def _field_tables(draw: st.DrawFn) -> dict[str, object]:
    modality = draw(_modalities)
    table: dict[str, object] = {"modality": modality}
    if modality == "continuous" and draw(st.booleans()):
        table["encoding"] = draw(st.sampled_from(["mu_law", "linear"]))
    if modality == "discrete" and draw(st.booleans()):
        table["offset"] = draw(st.integers(-1000, 1000))
    if modality == "image" and draw(st.booleans()):
        table["size"] = [draw(st.integers(1, 512)), draw(st.integers(1, 512))]
    if draw(st.booleans()):
        table["loss"] = draw(st.booleans())
    return table


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@given(st.dictionaries(st.sampled_from(["action", "observation/a", "observation/b/c"]), _field_tables()))
def test_spec_file_round_trip(tables: dict[str, dict[str, object]]) -> None:
    text_ = "".join(
        f'[fields."{path}"]\n' + "".join(f"{k} = {_toml_value(v)}\n" for k, v in body.items())
        for path, body in tables.items()
    )
    parsed = parse_spec(text_)
    assert set(parsed.field_overrides) == set(tables)
    for path, body in tables.items():
        override = parsed.field_overrides[path]
        spec = override.apply(FieldSpec(Modality[str(body["modality"]).upper()], encoding=Encoding.MU_LAW if body["modality"] == "continuous" else None))
        assert spec.modality.name.lower() == body["modality"]
        assert spec.loss == body.get("loss")
        if body["modality"] == "continuous":
            assert spec.encoding == Encoding(body.get("encoding", "mu_law"))
        if body["modality"] == "discrete":
            assert spec.offset == body.get("offset", 0)
        if body["modality"] == "image":
            size = body.get("size")
            assert spec.image_size == (None if size is None else tuple(size))


def test_empty_overrides_change_nothing() -> None:
    assert RldsOverrides().field_overrides == {}
    assert FieldOverride().apply(continuous("linear")) == continuous("linear")
