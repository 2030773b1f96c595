"""Decoding a vision-language row back into its units: images pixel for pixel, the
question without loss and the answer with it, E stripped and noted."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import output as out
from schemas.vocab import GATO, Modality
from tests.vl_row_fixtures import make_rows, make_unit, row_dict, scene_image
from transforms.text import BUNDLED_MODEL, SentencePieceTokenizer
from transforms.vl_decode import IMAGE, TEXT, decode_vl_row

TOKENIZER = SentencePieceTokenizer.from_path(BUNDLED_MODEL)
E = TOKENIZER.eos_id
L = 160
CAPTION, QUESTION, ANSWER = "a red square on a blue background", "Q: what colour is the square? A:", "red"


def _ids(text: str) -> list[int]:
    return TOKENIZER.encode_batch([text])[0].tolist()


IMAGE_A, IMAGE_B = scene_image(32, seed=1), scene_image(48, seed=2)  # 4 and 9 patches
CAPTION_UNIT = make_unit("img1", index=3, images=[IMAGE_A], target=_ids(CAPTION), end_id=E)
VQA_UNIT = make_unit("q7", images=[IMAGE_B], context=_ids(QUESTION), target=_ids(ANSWER), end_id=E)


def test_a_pair_row_gives_each_unit_its_image_and_texts_in_order() -> None:
    row = row_dict(make_rows([[CAPTION_UNIT, VQA_UNIT]], length=L), 0)
    caption, vqa = decode_vl_row(row, layout=GATO, tokenizer=TOKENIZER)
    assert caption["source_key"] == "img1#3" and vqa["source_key"] == "q7#0"
    np.testing.assert_array_equal(caption["images"][0], IMAGE_A)
    np.testing.assert_array_equal(vqa["images"][0], IMAGE_B)
    assert caption["texts"] == [{"text": CAPTION, "loss": True, "end": True, "ids": _ids(CAPTION)}]
    assert [(t["text"], t["loss"], t["end"]) for t in vqa["texts"]] == [(QUESTION, False, False), (ANSWER, True, True)]
    assert vqa["order"] == [IMAGE, TEXT, TEXT]


def test_an_interleaved_document_keeps_page_order_and_splits_adjacent_images() -> None:
    first = make_unit("page", images=[IMAGE_A, IMAGE_A[::-1].copy()], end_id=None, source_key="page")
    second = make_unit("page", images=[IMAGE_B], target=_ids("the end"), end_id=E, source_key="page")
    batch = make_rows([[first]], length=L, pair_rows=False)
    row = row_dict(batch, 0)
    # Append the second part's tokens to the same unit by hand: text after two images, then an image.
    for column, values in ((out.TOKENS, second.tokens), (out.MODALITY, second.modality),
                           (out.LOSS_MASK, second.loss_mask), (out.LOCAL_POSITIONS, second.local_positions)):
        row[column] = row[column][: first.num_tokens] + values.tolist()
    row[out.TIMESTEP] = [0] * (first.num_tokens + second.num_tokens)
    row[out.NUM_TOKENS] = first.num_tokens + second.num_tokens
    row[out.PATCH_PIXELS] += [p.tobytes() for p in second.patch_pixels]
    (unit,) = decode_vl_row(row, layout=GATO, tokenizer=TOKENIZER)
    assert unit["order"] == [IMAGE, IMAGE, IMAGE, TEXT]
    assert [image.shape for image in unit["images"]] == [(32, 32, 3), (32, 32, 3), (48, 48, 3)]
    np.testing.assert_array_equal(unit["images"][1], IMAGE_A[::-1])
    assert unit["texts"] == [{"text": "the end", "loss": True, "end": True, "ids": _ids("the end")}]


def test_a_document_cut_mid_text_has_no_end_until_its_last_row() -> None:
    ids = _ids("one two three four five six")
    head = make_unit("doc", target=ids[:4], end_id=None, source_key="doc")
    tail = make_unit("doc", target=ids[4:], end_id=E, source_key="doc")
    batch = make_rows([[head], [tail]], length=32, pair_rows=False)
    (first,), (last,) = (decode_vl_row(row_dict(batch, r), layout=GATO, tokenizer=TOKENIZER) for r in (0, 1))
    assert first["texts"][0]["end"] is False and last["texts"][0]["end"] is True
    assert first["texts"][0]["ids"] + last["texts"][0]["ids"] == ids


def test_without_a_tokenizer_ids_are_kept_and_e_is_not_recognized() -> None:
    row = row_dict(make_rows([[CAPTION_UNIT]], length=L), 0)
    (unit,) = decode_vl_row(row, layout=GATO, tokenizer=None)
    assert unit["texts"] == [{"text": None, "loss": True, "end": False, "ids": _ids(CAPTION) + [E]}]


def test_image_size_checks_the_patch_count() -> None:
    row = row_dict(make_rows([[CAPTION_UNIT]], length=L), 0)
    assert decode_vl_row(row, layout=GATO, tokenizer=None, image_size=32)[0]["images"][0].shape == (32, 32, 3)
    with pytest.raises(ValueError, match=r"d/d row 0 of 'img1': the image at token 0 has 4 patches, expected 144"):
        decode_vl_row(row, layout=GATO, tokenizer=None, image_size=192)


def test_rows_that_break_the_layout_are_errors_naming_the_row() -> None:
    row = row_dict(make_rows([[CAPTION_UNIT, VQA_UNIT]], length=L), 0)
    with pytest.raises(ValueError, match="units with timesteps \\[0, 1\\] do not match its 1 source keys"):
        decode_vl_row({**row, out.SOURCE_KEYS: ["x"]}, layout=GATO, tokenizer=None)
    modality = list(row[out.MODALITY])
    modality[5] = Modality.DISCRETE
    with pytest.raises(ValueError, match="token 5 has modality 3, expected text or image"):
        decode_vl_row({**row, out.MODALITY: modality}, layout=GATO, tokenizer=None)
    with pytest.raises(ValueError, match="13 image tokens but 12 patches"):
        decode_vl_row({**row, out.PATCH_PIXELS: row[out.PATCH_PIXELS][:-1]}, layout=GATO, tokenizer=None)
