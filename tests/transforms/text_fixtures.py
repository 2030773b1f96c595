"""A tiny SentencePiece model trained once per test session by the project's own command."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = (
    "the agent moves left right up down picks red blue green block and places it on "
    "table opens drawer closes door pushes button"
).split()


def write_corpus(path: Path, lines: int = 2000, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text(
        "\n".join(" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(lines)) + "\n",
        encoding="utf-8",
    )
    return path


def train_tiny_model(directory: Path, vocab_size: int = 300) -> Path:
    """Train a byte-fallback unigram model (<= vocab_size pieces) on a small corpus."""
    from transforms.train_sentencepiece import main

    corpus = write_corpus(directory / "corpus.txt")
    model = directory / "tiny.model"
    assert main([str(corpus), "--output", str(model), "--vocab_size", str(vocab_size)]) == 0
    return model
