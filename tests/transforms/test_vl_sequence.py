"""Vision-language units -> rows (spec section 8): pair order, packing at most five pairs a
row, documents cut into rows never inside an image; exact tokens and patch positions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.output import NO_TIMESTEP
from schemas.vl import KIND_INTERLEAVED, KIND_TEXT
from schemas.vocab import GATO
from tests.transforms.vl_fixtures import (
    EOS,
    GRID_2X2,
    IMAGE,
    PAD,
    PH,
    SIZE,
    TARGET,
    TEXT,
    caption_record,
    expected_patches,
    image_pixels,
    make_unit,
    png,
    record,
)
from transforms.hashing import stable_hash
from transforms.sequence import SequenceBatch
from transforms.text import SentencePieceTokenizer
from transforms.vl_sequence import cut_document, cut_documents, document_cuts, pack_pairs, pair_order
from transforms.vl_types import ImageRef, TokenizedUnit
from transforms.vl_units import UnitConfig, tokenize_record

P = GATO.pad


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_path("bundled:gato_text.model")


def in_pair_order(sizes: list[tuple[int, int]], *, seed: int = 0) -> list[TokenizedUnit]:
    """Units k#0, k#1, ... such that the i-th in `pair_order` has (patches, text) = sizes[i]."""
    order = pair_order([make_unit("k", i, patches=0, text=1) for i in range(len(sizes))], seed=seed, dataset="d")
    ranks = {index: rank for rank, index in enumerate(order)}
    return [make_unit("k", i, patches=sizes[ranks[i]][0], text=sizes[ranks[i]][1]) for i in range(len(sizes))]


def pack(units: list[TokenizedUnit], length: int, *, seed: int = 0) -> SequenceBatch:
    return pack_pairs(units, seed=seed, dataset="d", sequence_length=length, layout=GATO)


def test_pair_order_is_the_stable_hash_order() -> None:
    units = [make_unit(key, i, patches=0, text=1) for key in ("a", "b") for i in range(3)]
    expected = sorted(range(6), key=lambda j: stable_hash(7, "coco", units[j].key, units[j].order_index))
    assert pair_order(units, seed=7, dataset="coco") == expected
    assert pair_order(units, seed=8, dataset="coco") != expected  # the seed matters
    assert pair_order([], seed=0, dataset="d") == []


def test_pair_order_ties_keep_the_input_position() -> None:
    twins = [make_unit("a", 0, patches=0, text=n) for n in (1, 2, 3)]  # same key and index
    assert pair_order(twins, seed=0, dataset="d") == [0, 1, 2]


def test_tiny_caption_pairs_in_one_row_exact(tok: SentencePieceTokenizer) -> None:
    config = UnitConfig(eos_id=EOS, sequence_length=24, image_size=SIZE)
    units = tokenize_record(caption_record(b"a red ball", b"red"), tok, config).units
    order = pair_order(units, seed=0, dataset="d")
    batch = pack(list(units), 24)
    first, second = (units[i] for i in order)
    ids = {u.source_key: tok.encode_batch([c])[0].tolist() for u, c in zip(units, [b"a red ball", b"red"])}
    a, b = ids[first.source_key], ids[second.source_key]
    n = 4 + len(a) + 1 + 4 + len(b) + 1
    assert batch.tokens.tolist() == [[PH] * 4 + a + [EOS] + [PH] * 4 + b + [EOS] + [P] * (24 - n)]
    assert batch.modality.tolist() == [[IMAGE] * 4 + [TEXT] * (len(a) + 1) + [IMAGE] * 4 + [TEXT] * (len(b) + 1)
                                       + [PAD] * (24 - n)]
    assert batch.loss_mask.tolist() == [[False] * 4 + [True] * (len(a) + 1) + [False] * 4 + [True] * (len(b) + 1)
                                        + [False] * (24 - n)]
    assert batch.local_positions.tolist() == [[0, 1, 2, 3] + [TARGET] * (len(a) + 1) + [0, 1, 2, 3]
                                              + [TARGET] * (len(b) + 1) + [0] * (24 - n)]
    assert batch.timestep.tolist() == [[0] * (len(a) + 5) + [1] * (len(b) + 5) + [NO_TIMESTEP] * (24 - n)]
    assert not batch.is_prompt.any()
    assert batch.num_tokens.tolist() == [n] and batch.sequence_index.tolist() == [0]
    assert batch.row_patch_starts.tolist() == [0, 8]
    assert batch.patch_offsets.tolist() == [768 * i for i in range(9)]
    pixels = expected_patches(image_pixels())
    np.testing.assert_array_equal(batch.patch_pixels, np.concatenate([pixels, pixels]).reshape(-1))
    assert batch.patch_positions.tolist() == GRID_2X2 * 2
    assert batch.row_episode_ids == ("k",) and batch.episode_id == "k"
    assert batch.source_keys == ((first.source_key, second.source_key),)
    assert batch.prompt_episode_id == (None,) and batch.prompt_kind == (None,)
    assert batch.prompts_unavailable == 0


def test_five_pairs_per_row_and_the_sixth_starts_a_new_row() -> None:
    units = in_pair_order([(1, 2)] * 6)  # 3 tokens each: 18 would fit L = 32
    batch = pack(units, 32)
    order = pair_order(units, seed=0, dataset="d")
    assert batch.num_tokens.tolist() == [15, 3]
    assert batch.source_keys == (tuple(f"k#{i}" for i in order[:5]), (f"k#{order[5]}",))
    assert batch.timestep[0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4] + [NO_TIMESTEP] * 17
    assert batch.timestep[1].tolist() == [0, 0, 0] + [NO_TIMESTEP] * 29
    assert batch.tokens[1, :3].tolist() == [PH, 100 * order[5], 100 * order[5] + 1]
    assert batch.row_patch_starts.tolist() == [0, 5, 6]
    assert batch.patch_pixels.reshape(-1, 768)[:, 0].tolist() == order  # patches in token order
    assert batch.sequence_index.tolist() == [0, 1]


def test_max_per_row_is_a_parameter() -> None:
    units = in_pair_order([(0, 1)] * 4)
    batch = pack_pairs(units, seed=0, dataset="d", sequence_length=32, layout=GATO, max_per_row=2)
    assert batch.num_tokens.tolist() == [2, 2]
    with pytest.raises(ValueError, match="max pairs per row"):
        pack_pairs(units, seed=0, dataset="d", sequence_length=32, layout=GATO, max_per_row=0)


def test_a_pair_that_does_not_fit_starts_a_new_row() -> None:
    # In pair order: 6, 6, 6, 3 tokens with L = 16. The third does not fit (18 > 16) and
    # starts row 1; the fourth joins row 1, never going back to row 0 (12 + 3 would fit).
    units = in_pair_order([(2, 4), (2, 4), (2, 4), (1, 2)])
    batch = pack(units, 16)
    order = pair_order(units, seed=0, dataset="d")
    assert batch.num_tokens.tolist() == [12, 9]
    assert batch.source_keys == ((f"k#{order[0]}", f"k#{order[1]}"), (f"k#{order[2]}", f"k#{order[3]}"))
    assert batch.row_episode_ids == ("k", "k")
    assert batch.tokens[0, 12:].tolist() == [P] * 4
    assert batch.local_positions[1].tolist() == [0, 1] + [TARGET] * 4 + [0] + [TARGET] * 2 + [0] * 7
    assert batch.row_patch_starts.tolist() == [0, 4, 7]


def test_a_pair_of_exactly_l_fills_a_row_and_a_longer_one_is_an_error() -> None:
    batch = pack([make_unit("k", 0, patches=4, text=12)], 16)
    assert batch.num_tokens.tolist() == [16] and not (batch.modality == PAD).any()
    with pytest.raises(ValueError, match="'k#0' of dataset 'd': 17 tokens > sequence length 16"):
        pack([make_unit("k", 0, patches=4, text=13)], 16)


def test_no_pairs_no_rows() -> None:
    batch = pack([], 16)
    assert batch.tokens.shape == (0, 16) and batch.row_patch_starts.tolist() == [0]
    assert batch.patch_pixels.shape == (0,) and batch.patch_positions.shape == (0, 4)
    assert batch.source_keys == () and batch.row_episode_ids == ()


def test_the_row_id_is_its_first_units_record_key() -> None:
    units = [make_unit(key, 0, patches=0, text=10) for key in ("x", "y", "z")]
    batch = pack(units, 16)  # one unit per row
    first_keys = tuple(units[i].key for i in pair_order(units, seed=0, dataset="d"))
    assert batch.row_episode_ids == first_keys
    assert batch.episode_id == first_keys[0]


def test_text_document_cut_into_two_rows(tok: SentencePieceTokenizer) -> None:
    text = b"pick up the red ball. go to the door."
    (unit,) = tokenize_record(record(KIND_TEXT, text, key="doc"), tok, UnitConfig(eos_id=EOS, image_size=SIZE)).units
    full = tok.encode_batch([text])[0].tolist() + [EOS]
    assert len(full) == 21
    batch = cut_document(unit, sequence_length=16, layout=GATO)
    assert batch.tokens.tolist() == [full[:16], full[16:] + [P] * 11]
    assert batch.loss_mask.tolist() == [[True] * 16, [True] * 5 + [False] * 11]
    assert batch.local_positions.tolist() == [[TARGET] * 16, [TARGET] * 5 + [0] * 11]
    assert batch.modality.tolist() == [[TEXT] * 16, [TEXT] * 5 + [PAD] * 11]
    assert batch.timestep.tolist() == [[0] * 16, [0] * 5 + [NO_TIMESTEP] * 11]
    assert batch.num_tokens.tolist() == [16, 5] and batch.sequence_index.tolist() == [0, 1]
    assert batch.row_episode_ids == ("doc", "doc") and batch.episode_id == "doc"
    assert batch.source_keys == (("doc",), ("doc",))
    assert batch.row_patch_starts.tolist() == [0, 0, 0] and batch.patch_offsets.tolist() == [0]


def test_interleaved_row_ends_early_before_an_image(tok: SentencePieceTokenizer) -> None:
    first, second = image_pixels(1), image_pixels(2)
    rec = record(KIND_INTERLEAVED, ImageRef(png(first)), b"a red ball", ImageRef(png(second)), b"on the left",
                 key="page")
    (unit,) = tokenize_record(rec, tok, UnitConfig(eos_id=EOS, image_size=SIZE)).units
    t1, t2 = (tok.encode_batch([t])[0].tolist() for t in (b"a red ball", b"on the left"))
    # Tokens: image 0..3, text 4..8, image 9..12, text 13..16, E 17. With L = 11 the cut at
    # 11 falls inside the second image: row 0 ends at 9, before it.
    assert document_cuts(unit, sequence_length=11) == [0, 9, 18]
    batch = cut_document(unit, sequence_length=11, layout=GATO)
    assert batch.tokens.tolist() == [[PH] * 4 + t1 + [P] * 2, [PH] * 4 + t2 + [EOS] + [P] * 2]
    assert batch.loss_mask.tolist() == [[False] * 4 + [True] * 5 + [False] * 2, [False] * 4 + [True] * 5 + [False] * 2]
    assert batch.local_positions.tolist() == [[0, 1, 2, 3] + [TARGET] * 5 + [0, 0]] * 2
    assert batch.modality.tolist() == [[IMAGE] * 4 + [TEXT] * 5 + [PAD] * 2] * 2
    assert batch.timestep.tolist() == [[0] * 9 + [NO_TIMESTEP] * 2] * 2
    assert batch.row_patch_starts.tolist() == [0, 4, 8]
    np.testing.assert_array_equal(
        batch.patch_pixels.reshape(-1, 768), np.concatenate([expected_patches(first), expected_patches(second)])
    )
    assert batch.patch_positions.tolist() == GRID_2X2 * 2
    assert batch.source_keys == (("page",), ("page",))


def test_documents_cut_together_are_each_documents_rows_one_after_the_other(tok: SentencePieceTokenizer) -> None:
    config = UnitConfig(eos_id=EOS, image_size=SIZE)
    page = record(KIND_INTERLEAVED, ImageRef(png(image_pixels(1))), b"a red ball", ImageRef(png(image_pixels(2))),
                  b"on the left", key="page")
    units = [tokenize_record(r, tok, config).units[0]
             for r in (record(KIND_TEXT, b"pick up the red ball. go to the door.", key="doc"), page)]
    together = cut_documents(units, sequence_length=11, layout=GATO)
    alone = [cut_document(u, sequence_length=11, layout=GATO) for u in units]
    for name in ("tokens", "modality", "loss_mask", "local_positions", "timestep", "num_tokens"):
        np.testing.assert_array_equal(getattr(together, name), np.concatenate([getattr(b, name) for b in alone]))
    # Row indices count within each document; patches follow their rows.
    assert together.sequence_index.tolist() == [0, 1, 0, 1]
    assert together.row_episode_ids == ("doc", "doc", "page", "page")
    assert together.row_patch_starts.tolist() == [0, 0, 0, 4, 8]
    np.testing.assert_array_equal(together.patch_pixels, alone[1].patch_pixels)
    assert cut_documents([], sequence_length=11, layout=GATO).num_sequences == 0


def test_document_cut_at_an_image_boundary_and_image_longer_than_l() -> None:
    unit = make_unit("d", 0, patches=4, text=6)
    assert document_cuts(unit, sequence_length=4) == [0, 4, 8, 10]  # exactly the image, then text
    assert document_cuts(unit, sequence_length=10) == [0, 10]
    with pytest.raises(ValueError, match=r"image at tokens \[0, 4\) is longer than the sequence length 3"):
        document_cuts(unit, sequence_length=3)


def check_rows(batch: SequenceBatch, units: list[TokenizedUnit], length: int) -> None:
    """Every unit exactly once, its tokens, loss, positions and patches intact, rows valid."""
    by_key = {u.source_key: u for u in units}
    seen: list[str] = []
    for s, keys in enumerate(batch.source_keys or ()):
        assert 1 <= len(keys) <= 5 and batch.row_episode_ids[s] == by_key[keys[0]].key
        at, patch = 0, int(batch.row_patch_starts[s])
        for t, key in enumerate(keys):
            unit, n = by_key[key], by_key[key].num_tokens
            assert batch.tokens[s, at : at + n].tolist() == unit.tokens.tolist()
            assert batch.loss_mask[s, at : at + n].tolist() == unit.loss_mask.tolist()
            assert batch.local_positions[s, at : at + n].tolist() == unit.local_positions.tolist()
            assert (batch.timestep[s, at : at + n] == t).all()
            p = unit.patch_pixels.shape[0]
            pixels = batch.patch_pixels[batch.patch_offsets[patch] : batch.patch_offsets[patch + p]]
            assert pixels.tolist() == unit.patch_pixels.reshape(-1).tolist()
            at, patch = at + n, patch + p
        assert at == batch.num_tokens[s] <= length and patch == batch.row_patch_starts[s + 1]
        assert (batch.tokens[s, at:] == P).all() and (batch.timestep[s, at:] == NO_TIMESTEP).all()
        seen.extend(keys)
    assert sorted(seen) == sorted(by_key)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 12)), min_size=0, max_size=20),
    length=st.integers(16, 40),
    seed=st.integers(0, 3),
    data=st.data(),
)
def test_packing_ignores_input_order_and_keeps_every_unit_intact(
    sizes: list[tuple[int, int]], length: int, seed: int, data: st.DataObject
) -> None:
    units = [make_unit(f"r{i % 3}", i, patches=p, text=t) for i, (p, t) in enumerate(sizes)]
    shuffled = data.draw(st.permutations(units))
    ordered = [units[i] for i in pair_order(units, seed=seed, dataset="d")]
    reordered = [shuffled[i] for i in pair_order(shuffled, seed=seed, dataset="d")]
    assert [u.source_key for u in reordered] == [u.source_key for u in ordered]
    batch = pack(units, length, seed=seed)
    again = pack(shuffled, length, seed=seed)
    assert batch.source_keys == again.source_keys
    for name in ("tokens", "modality", "loss_mask", "local_positions", "timestep", "patch_pixels", "patch_positions"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(again, name))
    check_rows(batch, units, length)
    # Greedy: a row closes only when it is full (5 pairs) or the next pair does not fit.
    rows = batch.source_keys or ()
    by_key = {u.source_key: u for u in units}
    for s in range(len(rows) - 1):
        assert len(rows[s]) == 5 or batch.num_tokens[s] + by_key[rows[s + 1][0]].num_tokens > length
