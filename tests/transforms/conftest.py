"""Shared fixtures of the tokenization tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transforms.text_fixtures import train_tiny_model
from transforms.text import SentencePieceTokenizer


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path: Path) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_path(str(tiny_model_path))
