"""`gato-train-sentencepiece`: train a SentencePiece model from text files, offline.

    gato-train-sentencepiece corpus1.txt gs://bucket/corpus2.txt --output model.model \
        --vocab_size 8000

Inputs and output are fsspec URLs. One sentence per input line. Defaults make
`decode(encode(text)) == text` for any text: identity normalization, whitespace kept,
byte fallback for characters outside the learned pieces. The vocabulary is capped at
32000 pieces, the text range of the Gato vocabulary.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator, Sequence

from schemas.vocab import TEXT_VOCAB_SIZE

_BYTE_PIECES = 256  # byte fallback adds one piece per byte value


def _lines(paths: Sequence[str]) -> Iterator[str]:
    import fsspec

    for path in paths:
        with fsspec.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    yield line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gato-train-sentencepiece",
        description="Train a SentencePiece model (<= 32000 pieces) from text files.",
    )
    p.add_argument("inputs", nargs="+", help="text files (fsspec URLs), one sentence per line")
    p.add_argument("--output", required=True, help="where to write the .model (fsspec URL)")
    p.add_argument("--vocab_size", type=int, default=8000, help="pieces, at most 32000")
    p.add_argument(
        "--model_type", default="unigram", choices=("unigram", "bpe", "char", "word")
    )
    p.add_argument("--character_coverage", type=float, default=1.0)
    p.add_argument(
        "--no_byte_fallback",
        action="store_true",
        help="map unknown characters to <unk> instead of UTF-8 byte pieces",
    )
    p.add_argument(
        "--normalization",
        default="identity",
        help="SentencePiece normalization rule (identity keeps text exact; nmt_nfkc is "
        "SentencePiece's default)",
    )
    p.add_argument(
        "--input_sentence_size", type=int, default=1_000_000,
        help="sample at most this many lines (0: all)",
    )
    return p


def train(args: argparse.Namespace) -> bytes:
    """The serialized model proto trained per `args` (see `build_parser`)."""
    import sentencepiece as spm

    if not 0 < args.vocab_size <= TEXT_VOCAB_SIZE:
        raise ValueError(f"--vocab_size {args.vocab_size} must be in [1, {TEXT_VOCAB_SIZE}]")
    byte_fallback = not args.no_byte_fallback
    if byte_fallback and args.vocab_size <= _BYTE_PIECES + 3:
        raise ValueError(
            f"--vocab_size {args.vocab_size} leaves no room beside the {_BYTE_PIECES} byte "
            "pieces; raise it or pass --no_byte_fallback"
        )
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_lines(args.inputs),
        model_writer=model,
        vocab_size=args.vocab_size,
        model_type=args.model_type,
        character_coverage=args.character_coverage,
        byte_fallback=byte_fallback,
        normalization_rule_name=args.normalization,
        remove_extra_whitespaces=False,
        input_sentence_size=args.input_sentence_size,
        shuffle_input_sentence=True,
        # vocab_size is a ceiling, not a demand: a small corpus gives a smaller model
        # instead of an error (unigram only; the other types ignore it).
        hard_vocab_limit=args.model_type != "unigram",
        minloglevel=2,
    )
    return model.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    import fsspec

    from transforms.text import SentencePieceTokenizer

    args = build_parser().parse_args(argv)
    proto = train(args)
    tokenizer = SentencePieceTokenizer(proto, source=args.output)  # validates what we wrote
    with fsspec.open(args.output, "wb") as f:
        f.write(proto)
    print(f"wrote {args.output}: {tokenizer.vocab_size} pieces", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
