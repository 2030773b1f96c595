"""schemas/fields.py: field paths and roles, and FieldSpec's invariants and metadata."""

from __future__ import annotations

import json

import pytest

from schemas.fields import (
    ACTION,
    OBSERVATION,
    STEP_FLAGS,
    FieldSpec,
    continuous,
    discrete,
    image,
    join_path,
    role_of,
    text,
)
from schemas.vocab import Encoding, Modality


def test_paths_join_with_slashes_and_the_role_is_the_first_component() -> None:
    assert join_path("observation", "camera", "rgb") == "observation/camera/rgb"
    assert join_path("action") == "action"
    assert role_of("observation/camera/rgb") == OBSERVATION and role_of("action") == ACTION
    assert role_of("action/arm") == ACTION
    assert STEP_FLAGS == ("is_first", "is_last", "is_terminal")
    for bad in ("reward", "observations/x", "", "Observation"):
        with pytest.raises(ValueError, match="is neither under 'observation' nor 'action'"):
            role_of(bad)


def test_constructors_build_the_documented_specs() -> None:
    assert continuous() == FieldSpec(Modality.CONTINUOUS, Encoding.MU_LAW)
    assert continuous("linear") == FieldSpec(Modality.CONTINUOUS, Encoding.LINEAR)
    assert discrete(3) == FieldSpec(Modality.DISCRETE, offset=3)
    assert image((32, 48)) == FieldSpec(Modality.IMAGE, image_size=(32, 48))
    assert text(loss=True) == FieldSpec(Modality.TEXT, loss=True)
    with pytest.raises(ValueError):
        continuous("log")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modality": Modality.PAD}, "cannot have modality PAD"),
        ({"modality": Modality.SEPARATOR}, "cannot have modality SEPARATOR"),
        ({"modality": Modality.CONTINUOUS}, "needs an encoding"),
        ({"modality": Modality.DISCRETE, "encoding": Encoding.LINEAR}, "given for a DISCRETE field"),
        ({"modality": Modality.TEXT, "image_size": (16, 16)}, "image_size is only meaningful for image fields"),
    ],
)
def test_invalid_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FieldSpec(**kwargs)


def test_metadata_is_json_able_and_complete() -> None:
    assert continuous("linear").to_metadata() == {
        "modality": "continuous", "encoding": "linear", "offset": 0, "image_size": None, "loss": None}
    assert image((32, 48)).to_metadata() == {
        "modality": "image", "encoding": None, "offset": 0, "image_size": [32, 48], "loss": None}
    assert json.loads(json.dumps(discrete(-2).to_metadata()))["offset"] == -2
    assert text(loss=False).to_metadata()["loss"] is False
