"""transforms/train_sentencepiece.py: `gato-train-sentencepiece` trains a model that round-trips
any text, through fsspec URLs, and refuses sizes outside the text range."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from tests.transforms.text_fixtures import write_corpus
from transforms.text import SentencePieceTokenizer
from transforms.train_sentencepiece import build_parser, main


def test_command_writes_to_fsspec_urls(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.txt", lines=500)
    with fsspec.open("memory://corpus/c.txt", "wb") as f:
        f.write(corpus.read_bytes())
    out = "memory://out/m.model"
    assert main(["memory://corpus/c.txt", "--output", out, "--vocab_size", "300"]) == 0
    tokenizer = SentencePieceTokenizer.from_path(out)
    assert tokenizer.vocab_size <= 300
    assert tokenizer.decode(tokenizer.encode_batch(["opens drawer"])[0]) == "opens drawer"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vocab_size", "32001"], "must be in"),
        (["--vocab_size", "100"], "byte pieces"),
    ],
)
def test_command_refuses_bad_sizes(tmp_path: Path, args: list[str], message: str) -> None:
    corpus = write_corpus(tmp_path / "c.txt", lines=50)
    with pytest.raises(ValueError, match=message):
        main([str(corpus), "--output", str(tmp_path / "m.model"), *args])


def test_defaults_keep_text_exact_and_cap_at_the_text_range() -> None:
    args = build_parser().parse_args(["a.txt", "b.txt", "--output", "m.model"])
    assert args.inputs == ["a.txt", "b.txt"]
    assert (args.vocab_size, args.model_type, args.normalization) == (8000, "unigram", "identity")
    assert args.no_byte_fallback is False and args.character_coverage == 1.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["a.txt"])  # --output is required


def test_byte_fallback_round_trips_characters_the_corpus_never_had(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.txt", lines=300)
    model = tmp_path / "m.model"
    assert main([str(corpus), "--output", str(model), "--vocab_size", "300"]) == 0
    tokenizer = SentencePieceTokenizer.from_path(str(model))
    for text in ["  two  spaces ", "ünïcode ☃ 漢字", "tab\tend"]:
        assert tokenizer.decode(tokenizer.encode_batch([text])[0]) == text


def test_a_vocabulary_just_above_the_byte_pieces_is_the_smallest_allowed(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.txt", lines=50)
    with pytest.raises(ValueError, match="--vocab_size 259 leaves no room"):
        main([str(corpus), "--output", str(tmp_path / "m.model"), "--vocab_size", "259"])
    with pytest.raises(ValueError, match=r"--vocab_size 0 must be in \[1, 32000\]"):
        main([str(corpus), "--output", str(tmp_path / "m.model"), "--vocab_size", "0", "--no_byte_fallback"])
