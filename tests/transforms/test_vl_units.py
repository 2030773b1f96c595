"""Vision-language and text records -> units (spec section 8): exact tokens, loss masks,
local positions and patches per layout, and the rejects."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.vl import (
    CORRUPT_IMAGE,
    EMPTY_TEXT,
    IMAGE_TOO_LARGE,
    IMAGE_URL_ONLY,
    INVALID_UTF8,
    KIND_CAPTION,
    KIND_INTERLEAVED,
    KIND_TEXT,
    KIND_VQA,
    MISSING_FIELD,
    MISSING_IMAGE,
    UNIT_TOO_LONG,
)
from tests.transforms.vl_fixtures import (
    EOS,
    GRID_2X2,
    IMAGE,
    PATCHES,
    PH,
    SIZE,
    TARGET,
    TEXT,
    caption_record,
    expected_patches,
    image_pixels,
    png,
    record,
)
from transforms import vl_units
from transforms.text import SentencePieceTokenizer
from transforms.vl_types import ImageRef
from transforms.vl_units import UnitConfig, tokenize_record

CONFIG = UnitConfig(eos_id=EOS, sequence_length=64, image_size=SIZE)


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_path("bundled:gato_text.model")


def ids(tok: SentencePieceTokenizer, text: bytes) -> list[int]:
    return tok.encode_batch([text])[0].tolist()


def test_tiny_caption_pair_exact(tok: SentencePieceTokenizer) -> None:
    outcome = tokenize_record(caption_record(b"a red ball"), tok, CONFIG)
    assert outcome.rejects == () and outcome.kept
    (unit,) = outcome.units
    caption = ids(tok, b"a red ball")
    assert caption == [270, 263, 286, 273, 274]  # the bundled model, pinned
    assert unit.tokens.tolist() == [PH] * 4 + caption + [EOS]
    assert unit.modality.tolist() == [IMAGE] * 4 + [TEXT] * 6
    assert unit.loss_mask.tolist() == [False] * 4 + [True] * 6
    assert unit.local_positions.tolist() == [0, 1, 2, 3] + [TARGET] * 6
    assert unit.tokens.dtype == np.int32 and unit.modality.dtype == np.int8
    assert unit.local_positions.dtype == np.int16 and unit.loss_mask.dtype == bool
    np.testing.assert_array_equal(unit.patch_pixels, expected_patches(image_pixels()))
    assert unit.patch_positions.tolist() == GRID_2X2
    assert unit.image_spans.tolist() == [[0, 4]]
    assert (unit.key, unit.order_index, unit.source_key, unit.text_tokens) == ("k", 0, "k#0", 6)


def test_vqa_pair_question_without_loss_answer_with(tok: SentencePieceTokenizer) -> None:
    rec = record(KIND_VQA, ImageRef(png(image_pixels())), b"what colour is the ball?", b"red", key="q7")
    (unit,) = tokenize_record(rec, tok, CONFIG).units
    question = ids(tok, b"Q: what colour is the ball? A:")  # one text: the whole prompt
    answer = ids(tok, b"red")
    q, a = len(question), len(answer)
    assert (q, a) == (24, 3)
    assert unit.tokens.tolist() == [PH] * 4 + question + answer + [EOS]
    assert unit.modality.tolist() == [IMAGE] * 4 + [TEXT] * (q + a + 1)
    assert unit.loss_mask.tolist() == [False] * (4 + q) + [True] * (a + 1)
    # The question continues after the image's patches; the answer and E take 511.
    assert unit.local_positions.tolist() == list(range(4 + q)) + [TARGET] * (a + 1)
    assert unit.source_key == "q7#0" and unit.text_tokens == q + a + 1
    assert unit.patch_positions.tolist() == GRID_2X2


def test_vqa_question_is_inserted_as_decoded_text(tok: SentencePieceTokenizer) -> None:
    rec = record(KIND_VQA, ImageRef(png(image_pixels())), "{x} é?".encode(), b"yes")
    (unit,) = tokenize_record(rec, tok, CONFIG).units
    assert unit.tokens[4 : 4 + len(ids(tok, "Q: {x} é? A:".encode()))].tolist() == ids(tok, "Q: {x} é? A:".encode())


def test_text_document_exact(tok: SentencePieceTokenizer) -> None:
    text = b"pick up the red ball. go to the door."
    (unit,) = tokenize_record(record(KIND_TEXT, text, key="doc"), tok, CONFIG).units
    expected = ids(tok, text) + [EOS]
    assert unit.tokens.tolist() == expected
    assert unit.modality.tolist() == [TEXT] * len(expected)
    assert unit.loss_mask.tolist() == [True] * len(expected)
    assert unit.local_positions.tolist() == [TARGET] * len(expected)
    assert unit.patch_pixels.shape == (0, 768) and unit.patch_positions.shape == (0, 4)
    assert unit.image_spans.shape == (0, 2)
    assert (unit.source_key, unit.order_index, unit.text_tokens) == ("doc", 0, len(expected))


def test_interleaved_document_exact(tok: SentencePieceTokenizer) -> None:
    first, second = image_pixels(1), image_pixels(2)
    rec = record(KIND_INTERLEAVED, ImageRef(png(first)), b"a red ball", ImageRef(png(second)), b"on the left")
    (unit,) = tokenize_record(rec, tok, CONFIG).units
    t1, t2 = ids(tok, b"a red ball"), ids(tok, b"on the left")  # each run encoded on its own
    assert unit.tokens.tolist() == [PH] * 4 + t1 + [PH] * 4 + t2 + [EOS]
    assert unit.modality.tolist() == [IMAGE] * 4 + [TEXT] * 5 + [IMAGE] * 4 + [TEXT] * 5
    assert unit.loss_mask.tolist() == [False] * 4 + [True] * 5 + [False] * 4 + [True] * 5
    # Positions count within each image.
    assert unit.local_positions.tolist() == [0, 1, 2, 3] + [TARGET] * 5 + [0, 1, 2, 3] + [TARGET] * 5
    assert unit.image_spans.tolist() == [[0, 4], [9, 13]]
    np.testing.assert_array_equal(
        unit.patch_pixels, np.concatenate([expected_patches(first), expected_patches(second)])
    )
    assert unit.patch_positions.tolist() == GRID_2X2 * 2
    assert unit.text_tokens == 10


def test_no_eos_model_omits_e(tok: SentencePieceTokenizer) -> None:
    config = UnitConfig(eos_id=None, sequence_length=64, image_size=SIZE)
    (unit,) = tokenize_record(caption_record(b"a red ball"), tok, config).units
    assert unit.tokens.tolist() == [PH] * 4 + ids(tok, b"a red ball")
    (doc,) = tokenize_record(record(KIND_TEXT, b"red"), tok, config).units
    assert doc.tokens.tolist() == ids(tok, b"red")


def test_one_pair_per_caption_and_one_decode(tok: SentencePieceTokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = vl_units.image_to_patches
    monkeypatch.setattr(vl_units, "image_to_patches", lambda data, *, size: calls.append(size) or real(data, size=size))
    captions = [b"a red ball", b"a blue key", b"red", b"on the left", b"a red ball"]
    outcome = tokenize_record(caption_record(*captions), tok, CONFIG)
    assert calls == [SIZE]
    assert [u.source_key for u in outcome.units] == ["k#0", "k#1", "k#2", "k#3", "k#4"]
    assert [u.order_index for u in outcome.units] == [0, 1, 2, 3, 4]
    for unit, caption in zip(outcome.units, captions, strict=True):
        assert unit.tokens.tolist() == [PH] * 4 + ids(tok, caption) + [EOS]
        assert unit.patch_pixels is outcome.units[0].patch_pixels  # shared, not copied
    assert not outcome.units[0].patch_pixels.flags.writeable


@pytest.mark.parametrize("blank", [b"", b"   ", b" \t\n", "\u3000".encode()])
def test_empty_caption_rejects_only_its_pair(tok: SentencePieceTokenizer, blank: bytes) -> None:
    outcome = tokenize_record(caption_record(b"a red ball", blank, b"red"), tok, CONFIG)
    assert [u.source_key for u in outcome.units] == ["k#0", "k#2"]
    ((reason, field, detail),) = outcome.rejects
    assert (reason, field) == (EMPTY_TEXT, "captions")
    assert "'k'" in detail and "captions[1]" in detail and repr(blank.decode()) in detail


def test_invalid_utf8_caption_rejects_its_pair(tok: SentencePieceTokenizer) -> None:
    outcome = tokenize_record(caption_record(b"a red \xff ball", b"red"), tok, CONFIG)
    assert [u.source_key for u in outcome.units] == ["k#1"]
    ((reason, field, detail),) = outcome.rejects
    assert (reason, field) == (INVALID_UTF8, "captions")
    assert "captions[0]" in detail and "byte 6" in detail and "\\xff" in detail


def test_rejects_come_in_caption_order(tok: SentencePieceTokenizer) -> None:
    long = b" ".join([b"red"] * 80)
    captions = [b"", b"\xff", long] + [b"red"] * 8 + [b""]
    outcome = tokenize_record(caption_record(*captions), tok, CONFIG)
    assert [r[0] for r in outcome.rejects] == [EMPTY_TEXT, INVALID_UTF8, UNIT_TOO_LONG, EMPTY_TEXT]
    assert "captions[11]" in outcome.rejects[-1][2]
    assert len(outcome.units) == 8


@pytest.mark.parametrize("kind", [KIND_TEXT, KIND_VQA])
def test_invalid_utf8_rejects_the_unit(tok: SentencePieceTokenizer, kind: str) -> None:
    segments = (b"\xc3(",) if kind == KIND_TEXT else (ImageRef(png(image_pixels())), b"\xc3(", b"red")
    outcome = tokenize_record(record(kind, *segments), tok, CONFIG)
    assert outcome.units == () and not outcome.kept
    assert [r[:2] for r in outcome.rejects] == [(INVALID_UTF8, "text" if kind == KIND_TEXT else "question")]


def test_corrupt_image_rejects_the_record(tok: SentencePieceTokenizer) -> None:
    data = png(image_pixels())[:40]  # truncated PNG
    outcome = tokenize_record(caption_record(b"a red ball", b"red", image=ImageRef(data)), tok, CONFIG)
    assert outcome.units == ()
    ((reason, field, detail),) = outcome.rejects  # one reject for the whole record
    assert (reason, field) == (CORRUPT_IMAGE, "image")
    assert "'k'" in detail and "f.parquet #3" in detail and " at 0x" not in detail


@pytest.mark.parametrize("problem", [MISSING_IMAGE, IMAGE_URL_ONLY])
def test_missing_or_url_only_image_rejects_the_record(tok: SentencePieceTokenizer, problem: str) -> None:
    image = ImageRef(None, problem=problem, detail="http://x/1.jpg")
    outcome = tokenize_record(caption_record(b"red", image=image), tok, CONFIG)
    assert outcome.units == ()
    assert outcome.rejects == ((problem, "image", "record 'k' (f.parquet #3), field image: http://x/1.jpg"),)


def test_pair_longer_than_l_is_rejected(tok: SentencePieceTokenizer) -> None:
    caption = b"pick up the red ball. go to the door."  # 20 ids: 4 + 20 + 1 = 25 tokens
    config = UnitConfig(eos_id=EOS, sequence_length=24, image_size=SIZE)
    outcome = tokenize_record(caption_record(caption, b"red"), tok, config)
    assert [u.source_key for u in outcome.units] == ["k#1"]
    ((reason, field, detail),) = outcome.rejects
    assert (reason, field) == (UNIT_TOO_LONG, "captions")
    assert "25 tokens > sequence length 24" in detail
    exact = UnitConfig(eos_id=EOS, sequence_length=25, image_size=SIZE)
    assert len(tokenize_record(caption_record(caption), tok, exact).units) == 1


def test_image_with_more_patches_than_l_is_rejected(tok: SentencePieceTokenizer) -> None:
    config = UnitConfig(eos_id=EOS, sequence_length=PATCHES - 1, image_size=SIZE)
    outcome = tokenize_record(caption_record(b"red"), tok, config)
    assert [r[:2] for r in outcome.rejects] == [(IMAGE_TOO_LARGE, "image")]
    doc = record(KIND_INTERLEAVED, b"red", ImageRef(png(image_pixels())))
    assert [r[:2] for r in tokenize_record(doc, tok, config).rejects] == [(IMAGE_TOO_LARGE, "images")]


def test_question_past_the_conditioning_positions_is_rejected(tok: SentencePieceTokenizer) -> None:
    question = b" ".join([b"red"] * 200)  # 4 patches + ~600 question tokens > 511 positions
    rec = record(KIND_VQA, ImageRef(png(image_pixels())), question, b"red")
    config = UnitConfig(eos_id=EOS, sequence_length=2048, image_size=SIZE)
    assert [r[:2] for r in tokenize_record(rec, tok, config).rejects] == [(UNIT_TOO_LONG, "question")]


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ((ImageRef(b"not an image"), b"red"), (CORRUPT_IMAGE, "images")),
        ((b"red", ImageRef(None, problem=MISSING_IMAGE, detail="a.jpg")), (MISSING_IMAGE, "images")),
        ((ImageRef(png(image_pixels())), b"red", b"\xff"), (INVALID_UTF8, "texts")),
        ((ImageRef(png(image_pixels())), b"red", b" "), (EMPTY_TEXT, "texts")),
        ((ImageRef(png(image_pixels())),), (EMPTY_TEXT, "texts")),  # images only: no text
        ((), (EMPTY_TEXT, "texts")),
    ],
)
def test_any_bad_part_rejects_an_interleaved_document(
    tok: SentencePieceTokenizer, segments: tuple, expected: tuple[str, str]
) -> None:
    outcome = tokenize_record(record(KIND_INTERLEAVED, *segments), tok, CONFIG)
    assert outcome.units == ()
    assert [r[:2] for r in outcome.rejects] == [expected]


@pytest.mark.parametrize(
    ("kind", "segments", "field"),
    [
        (KIND_TEXT, (b"",), "text"),
        (KIND_TEXT, (b"\n\n",), "text"),
        (KIND_VQA, (ImageRef(png(image_pixels())), b"", b"red"), "question"),
        (KIND_VQA, (ImageRef(png(image_pixels())), b"why?", b" "), "answer"),
    ],
)
def test_empty_text_rejects_the_unit(tok: SentencePieceTokenizer, kind: str, segments: tuple, field: str) -> None:
    outcome = tokenize_record(record(kind, *segments), tok, CONFIG)
    assert outcome.units == () and [r[:2] for r in outcome.rejects] == [(EMPTY_TEXT, field)]


def test_a_caption_record_without_captions_is_rejected(tok: SentencePieceTokenizer) -> None:
    outcome = tokenize_record(caption_record(), tok, CONFIG)
    assert [r[:2] for r in outcome.rejects] == [(EMPTY_TEXT, "captions")]


def test_record_problems_reject_the_record(tok: SentencePieceTokenizer) -> None:
    problems = ((MISSING_FIELD, "captions", "f.parquet: no column 'captions'"),)
    rec = record(KIND_CAPTION, ImageRef(png(image_pixels())), b"red", problems=problems)
    outcome = tokenize_record(rec, tok, CONFIG)
    assert outcome.units == () and outcome.rejects == problems


def test_a_record_not_matching_its_kind_is_a_value_error(tok: SentencePieceTokenizer) -> None:
    with pytest.raises(ValueError, match="expected an image"):
        tokenize_record(record("caption", b"red", b"red"), tok, CONFIG)
    with pytest.raises(ValueError, match="unknown kind 'audio'"):
        tokenize_record(record("audio", b"red"), tok, CONFIG)
    with pytest.raises(ValueError, match="one segment, got 2"):
        tokenize_record(record(KIND_TEXT, b"red", b"red"), tok, CONFIG)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 40}, "not a positive multiple of 16"),
        ({"image_size": 368}, "529 patches"),  # 23 x 23 patches do not fit below position 511
        ({"sequence_length": 0}, "sequence length"),
        ({"eos_id": 32000}, "eos id 32000"),
    ],
)
def test_unit_config_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UnitConfig(**{"eos_id": EOS, **kwargs})


def test_default_image_size_gives_144_patches() -> None:
    assert UnitConfig(eos_id=None).patches_per_image == 144
