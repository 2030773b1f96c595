"""The job's text model: whether it needs one, the bundled default, and its digest.

`needs_text_model`: whether any planned field is text. Without `--sentencepiece_model`
such a job uses `DEFAULT_SENTENCEPIECE_MODEL`, a small byte-fallback model bundled with
the package (`transforms/text_models/`, named `bundled:gato_text.model`: workers load it
from their own installed package, never from a path on the launcher), so every text still
encodes and decodes exactly. The model enters the configuration hash by content
(`text_model_digest`, its sha256, recorded in the manifest's configuration as
`SENTENCEPIECE_SHA256`), never by path.
"""

from __future__ import annotations

import hashlib

from planning.work import Plan
from schemas.vocab import Modality
from transforms.text import BUNDLED_MODEL, model_bytes

# Used for text fields when no --sentencepiece_model is given (transforms/text.py).
DEFAULT_SENTENCEPIECE_MODEL = BUNDLED_MODEL
SENTENCEPIECE_SHA256 = "sentencepiece_model_sha256"


def needs_text_model(plan: Plan) -> bool:
    """Whether any planned field is text (and so needs a SentencePiece model)."""
    return any(
        spec.modality is Modality.TEXT for fields in plan.task_fields.values() for spec in fields.values()
    )


def text_model_digest(path: str) -> str:
    """sha256 of a SentencePiece model file (any fsspec path, or bundled): the model enters
    the config hash by content."""
    return hashlib.sha256(model_bytes(path)).hexdigest()
