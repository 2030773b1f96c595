"""The job's text model: whether it needs one, the bundled default, and its digest.

`needs_text_model`: whether any planned field is text. Without `--sentencepiece_model`
such a job uses `DEFAULT_SENTENCEPIECE_MODEL`, a small byte-fallback model bundled under
`samples/text/`, so every text still encodes and decodes exactly. The model enters the
configuration hash by content (`text_model_digest`, its sha256, recorded in the
manifest's configuration as `SENTENCEPIECE_SHA256`), never by path.
"""

from __future__ import annotations

import hashlib

import fsspec

from planning.options import SAMPLES_DIR
from planning.work import Plan
from schemas.vocab import Modality

# Used for text fields when no --sentencepiece_model is given: a small byte-fallback model
# trained on BabyAI missions by samples/text/make_text_model.py; every text still encodes
# and decodes exactly.
DEFAULT_SENTENCEPIECE_MODEL = f"{SAMPLES_DIR}/text/gato_text.model"
SENTENCEPIECE_SHA256 = "sentencepiece_model_sha256"


def needs_text_model(plan: Plan) -> bool:
    """Whether any planned field is text (and so needs a SentencePiece model)."""
    return any(
        spec.modality is Modality.TEXT for fields in plan.task_fields.values() for spec in fields.values()
    )


def text_model_digest(path: str) -> str:
    """sha256 of a SentencePiece model file: the model enters the config hash by content."""
    with fsspec.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
