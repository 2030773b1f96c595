"""transforms/text.py: SentencePiece text encoding (spec sections 1-2)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import fsspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.vocab import TEXT_VOCAB_SIZE
from transforms.errors import INVALID_UTF8, TEXT_ID_OUT_OF_RANGE, TokenizationError
from transforms.text import BUNDLED_MODEL, SentencePieceTokenizer, bundled_models, model_bytes


def _piece(text: str) -> bytes:
    """A serialized `ModelProto.pieces` entry (field 1: piece, field 2: score)."""
    body = text.encode()
    inner = b"\x0a" + bytes([len(body)]) + body + b"\x15" + struct.pack("<f", -100.0)
    return b"\x0a" + bytes([len(inner)]) + inner


def _padded_model(model: bytes, pieces: int, have: int) -> bytes:
    # Repeated proto fields concatenate, so appending entries grows the vocabulary.
    return model + b"".join(_piece(f"extra{i}") for i in range(pieces - have))


def test_trained_model_is_within_the_requested_size(tiny_tokenizer: SentencePieceTokenizer) -> None:
    assert 256 < tiny_tokenizer.vocab_size <= 300


def test_encode_batch_gives_int32_ids_per_text(tiny_tokenizer: SentencePieceTokenizer) -> None:
    out = tiny_tokenizer.encode_batch(["the agent", b"the agent", ""])
    assert [a.dtype for a in out] == [np.int32] * 3
    assert out[0].tolist() == out[1].tolist() and out[0].size > 0
    assert out[2].tolist() == []
    assert all(int(a.max()) < tiny_tokenizer.vocab_size for a in out[:2])


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_decode_encode_is_exact(text: str) -> None:
    tokenizer = _SHARED["tokenizer"]
    assert tokenizer.decode(tokenizer.encode_batch([text])[0]) == text


_SHARED: dict[str, SentencePieceTokenizer] = {}


@pytest.fixture(autouse=True)
def _share(tiny_tokenizer: SentencePieceTokenizer) -> None:
    # hypothesis tests cannot take function-scoped fixtures as arguments.
    _SHARED["tokenizer"] = tiny_tokenizer


def test_pickles_as_the_model_proto(tiny_tokenizer: SentencePieceTokenizer) -> None:
    data = pickle.dumps(tiny_tokenizer)
    clone = pickle.loads(data)
    assert clone.vocab_size == tiny_tokenizer.vocab_size
    assert clone.source == tiny_tokenizer.source
    texts = ["picks the red block", "ünïcode ☃"]
    assert [a.tolist() for a in clone.encode_batch(texts)] == [
        a.tolist() for a in tiny_tokenizer.encode_batch(texts)
    ]
    assert len(data) < len(tiny_tokenizer.model_proto) + 1000


def test_reads_any_fsspec_url(tiny_model_path: Path) -> None:
    url = "memory://models/tiny.model"
    with fsspec.open(url, "wb") as f:
        f.write(tiny_model_path.read_bytes())
    assert SentencePieceTokenizer.from_path(url).source == url


def test_the_bundled_model_is_package_data_named_without_a_path() -> None:
    # Issue 14: the default model was a path into the launcher's checkout (samples/text/),
    # which a Dataflow worker does not have; the name resolves on whichever machine reads it.
    assert BUNDLED_MODEL == "bundled:gato_text.model" and bundled_models() == [BUNDLED_MODEL]
    packaged = Path(__file__).resolve().parents[2] / "transforms" / "text_models" / "gato_text.model"
    assert model_bytes(BUNDLED_MODEL) == packaged.read_bytes()
    tokenizer = SentencePieceTokenizer.from_path(BUNDLED_MODEL)
    assert tokenizer.source == BUNDLED_MODEL
    assert tokenizer.decode(tokenizer.encode_batch(["go to the red ball ☃"])[0]) == "go to the red ball ☃"


@pytest.mark.parametrize("name", ["bundled:nope.model", "bundled:../text.py", "bundled:"])
def test_an_unknown_bundled_model_is_refused_naming_the_bundled_ones(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}: no such bundled text model; bundled: \['bundled:gato_text.model'\]"):
        model_bytes(name)


def test_refuses_more_than_32000_pieces(tiny_tokenizer: SentencePieceTokenizer) -> None:
    have = tiny_tokenizer.vocab_size
    ok = SentencePieceTokenizer(_padded_model(tiny_tokenizer.model_proto, TEXT_VOCAB_SIZE, have))
    assert ok.vocab_size == TEXT_VOCAB_SIZE
    with pytest.raises(ValueError, match=r"big\.model: SentencePiece model has 32001 pieces"):
        SentencePieceTokenizer(
            _padded_model(tiny_tokenizer.model_proto, TEXT_VOCAB_SIZE + 1, have),
            source="big.model",
        )


def test_not_a_model_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"hello")
    with pytest.raises(ValueError, match="bad.model: not a SentencePiece model"):
        SentencePieceTokenizer.from_path(str(bad))


def test_invalid_utf8_names_the_index(tiny_tokenizer: SentencePieceTokenizer) -> None:
    with pytest.raises(TokenizationError) as info:
        tiny_tokenizer.encode_batch([b"ok", b"ok", b"bad \xff byte"])
    assert (info.value.reason, info.value.timestep) == (INVALID_UTF8, 2)
    assert b"\xff" in info.value.value


def test_ids_beyond_the_text_range_are_bad_input(tiny_model_path: Path) -> None:
    # A valid model cannot yield such an id; the check guards the vocabulary contract
    # anyway, so fake a processor that does.
    class Overflowing:
        def Encode(self, text: str, out_type: type) -> list[int]:  # noqa: N802
            return {"a": [5], "b": [7, TEXT_VOCAB_SIZE]}[text]

    tokenizer = SentencePieceTokenizer.from_path(str(tiny_model_path))
    tokenizer._sp = Overflowing()  # type: ignore[assignment]
    with pytest.raises(TokenizationError) as info:
        tokenizer.encode_batch(["a", "b"])
    assert (info.value.reason, info.value.timestep, info.value.value) == (
        TEXT_ID_OUT_OF_RANGE, 1, TEXT_VOCAB_SIZE,
    )


def test_decode_rejects_unknown_ids(tiny_tokenizer: SentencePieceTokenizer) -> None:
    with pytest.raises(ValueError, match="outside the model"):
        tiny_tokenizer.decode([tiny_tokenizer.vocab_size])


def test_repeated_texts_encode_as_one_by_one(tiny_tokenizer: SentencePieceTokenizer) -> None:
    """Each distinct text is encoded once: the ids equal encoding each text alone, and
    every position owns its array (mutating one leaves the others)."""
    texts = ["go to the red ball", b"go to the red ball", "the agent", np.bytes_(b"the agent"),
             bytearray(b"go to the red ball"), "", "go to the red ball"]
    one_by_one = [tiny_tokenizer._sp.Encode(bytes(t).decode() if not isinstance(t, str) else t, out_type=int)
                  for t in texts]
    out = tiny_tokenizer.encode_batch(texts)
    assert [a.tolist() for a in out] == one_by_one and all(a.dtype == np.int32 for a in out)
    out[0][:] = 0
    assert out[-1].tolist() == one_by_one[-1]


def test_a_repeated_bad_text_names_its_first_index(tiny_tokenizer: SentencePieceTokenizer) -> None:
    with pytest.raises(TokenizationError) as info:
        tiny_tokenizer.encode_batch([b"ok", b"bad \xff", b"ok", b"bad \xff"])
    assert (info.value.reason, info.value.timestep) == (INVALID_UTF8, 1)


def test_eos_id_is_the_models_end_of_sequence_id_or_none(tiny_tokenizer: SentencePieceTokenizer) -> None:
    import io

    import sentencepiece as spm

    assert SentencePieceTokenizer.from_path(BUNDLED_MODEL).eos_id == 2 and tiny_tokenizer.eos_id == 2
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["the agent moves left", "picks the red block"] * 20), model_writer=model,
        vocab_size=24, eos_id=-1, minloglevel=2,
    )
    assert SentencePieceTokenizer(model.getvalue()).eos_id is None


def test_each_distinct_text_is_encoded_in_a_call_of_its_own(tiny_model_path: Path) -> None:
    """Given a list, SentencePiece starts a thread pool on every call (~140 us, ~40x a short
    mission's encode): texts go one per call, and the ids are those of a batch call."""
    tokenizer = SentencePieceTokenizer.from_path(str(tiny_model_path))
    texts = ["go to the red ball", "open the door", "go to the red ball"]
    expected = [np.asarray(ids, np.int32) for ids in tokenizer._sp.Encode(texts, out_type=int)]
    real = tokenizer._sp

    class OnePerCall:
        def Encode(self, text: str, out_type: type) -> list[int]:  # noqa: N802
            assert isinstance(text, str), "a batch call"
            return real.Encode(text, out_type=out_type)

    tokenizer._sp = OnePerCall()  # type: ignore[assignment]
    got = tokenizer.encode_batch(texts)
    assert len(got) == 3 and all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    "texts", [["go to the red ball", "", "open the door", "go to the red ball"], [], [""], [b"caf\xc3\xa9", "x"]]
)
def test_flat_encoding_is_the_batch_concatenated(tiny_tokenizer: SentencePieceTokenizer, texts: list) -> None:
    ids, lengths = tiny_tokenizer.encode_flat(texts)
    batch = tiny_tokenizer.encode_batch(texts)
    assert ids.dtype == np.int32 and lengths.dtype == np.int64
    assert lengths.tolist() == [len(b) for b in batch]
    assert ids.tolist() == [i for b in batch for i in b.tolist()]


def test_flat_encoding_has_the_batchs_errors(tiny_tokenizer: SentencePieceTokenizer) -> None:
    texts = ["ok", b"\xff\xfe", "fine", b"\xff\xfe"]
    with pytest.raises(TokenizationError) as batch:
        tiny_tokenizer.encode_batch(texts)
    with pytest.raises(TokenizationError) as flat:
        tiny_tokenizer.encode_flat(texts)
    assert (flat.value.reason, flat.value.timestep, str(flat.value)) == (INVALID_UTF8, 1, str(batch.value))


_TEXTS = st.sampled_from(
    ["go to the red ball", b"go to the red ball", bytearray(b"go to the red ball"), np.bytes_(b"open the door"),
     "open the door", "", b"", "caf\u00e9"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_TEXTS, max_size=12))
def test_runs_of_equal_texts_encode_as_one_by_one(tiny_tokenizer: SentencePieceTokenizer, texts: list) -> None:
    """Only the first text of each run of equal ones is looked up: runs of any length,
    equal texts of other types (str and its bytes are not equal), texts coming back
    after others; the ids, flat or per text, are each text's own."""
    one_by_one = [tiny_tokenizer._sp.Encode(t if isinstance(t, str) else bytes(t).decode(), out_type=int) for t in texts]
    assert [a.tolist() for a in tiny_tokenizer.encode_batch(texts)] == one_by_one
    ids, lengths = tiny_tokenizer.encode_flat(texts)
    assert ids.dtype == np.int32 and lengths.tolist() == [len(i) for i in one_by_one]
    assert ids.tolist() == [i for one in one_by_one for i in one]


def test_one_text_at_every_step_is_tiled(tiny_tokenizer: SentencePieceTokenizer) -> None:
    ids, lengths = tiny_tokenizer.encode_flat([b"go to the red ball"] * 4)
    one = tiny_tokenizer._sp.Encode("go to the red ball", out_type=int)
    assert ids.tolist() == one * 4 and lengths.tolist() == [len(one)] * 4 and ids.dtype == np.int32
