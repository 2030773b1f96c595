"""The Gato data job: every stage composed in one function (`build_pipeline`).

Two passes read the same TFDS shards (docs/ARCHITECTURE.md). Pass 1 computes each
task's returns (a light read of flags and rewards), expert return and threshold, and a
bounded pool of prompt windows (decoding only the episodes the pool can keep);
pass 2 validates, filters, tokenizes, sequences and writes, one episode at a time, with
pass 1's small results as side inputs. The manifest is written last, from the finalized
shard lists and the statistics, so an output without `manifest.json` is unfinished.
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
