"""planning/text_model.py: a job needs a text model exactly when a planned field is text; the
bundled default exists and loads; the digest is the file's sha256 through fsspec."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec

from planning.text_model import (
    DEFAULT_SENTENCEPIECE_MODEL,
    SENTENCEPIECE_SHA256,
    needs_text_model,
    text_model_digest,
)
from planning.work import Plan
from schemas.datasets import BABYAI, METAWORLD
from schemas.fields import continuous, discrete, image, text
from transforms.text import BUNDLED_MODEL, SentencePieceTokenizer


def _plan(task_fields: dict) -> Plan:
    return Plan(dataset=METAWORLD, task_fields=task_fields, work_items=())


def test_a_text_field_in_any_task_needs_the_model() -> None:
    assert not needs_text_model(_plan({}))
    assert not needs_text_model(_plan({"a": {"observation": image(), "action": discrete()},
                                       "b": {"observation/x": continuous()}}))
    assert needs_text_model(_plan({"a": {"action": discrete()}, "b": {"observation/mission": text()}}))
    assert needs_text_model(Plan(dataset=BABYAI, task_fields={"t": BABYAI.field_specs}, work_items=()))


def test_the_bundled_default_model_loads_and_round_trips_text() -> None:
    # A name, not a path on this machine: workers resolve it from their installed package.
    assert DEFAULT_SENTENCEPIECE_MODEL == BUNDLED_MODEL == "bundled:gato_text.model"
    tokenizer = SentencePieceTokenizer.from_path(DEFAULT_SENTENCEPIECE_MODEL)
    mission = "go to the red ball ☃"
    assert tokenizer.decode(tokenizer.encode_batch([mission])[0]) == mission


def test_the_digest_is_the_sha256_of_the_bytes_wherever_the_file_is(tmp_path: Path) -> None:
    assert SENTENCEPIECE_SHA256 == "sentencepiece_model_sha256"
    local = tmp_path / "m.model"
    local.write_bytes(b"model bytes")
    expected = hashlib.sha256(b"model bytes").hexdigest()
    assert text_model_digest(str(local)) == expected
    with fsspec.open("memory://models/copy.model", "wb") as f:
        f.write(b"model bytes")
    assert text_model_digest("memory://models/copy.model") == expected
    local.write_bytes(b"model bytes!")
    assert text_model_digest(str(local)) != expected
    bundled = Path(__file__).resolve().parents[2] / "transforms" / "text_models" / "gato_text.model"
    assert text_model_digest(DEFAULT_SENTENCEPIECE_MODEL) == hashlib.sha256(bundled.read_bytes()).hexdigest()
