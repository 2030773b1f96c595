"""reader/batch.py: a row group decodes to the stored values, and a batch puts every row's
patches, in token order, beside its image tokens (patch i of row b <-> i-th image token)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reader.batch import (
    PATCH_MASK,
    READ_COLUMNS,
    TOKEN_COLUMNS,
    Unit,
    assemble,
    decode_unit,
)
from schemas import output as out
from schemas.vocab import GATO, Modality
from tests.reader.reader_fixtures import (
    default_patch_count,
    episode_id,
    expected_tokens,
    sequences_table,
)

LENGTH = 16


def _unit(indices: list[int], *, channels: int = 3, stored: int = 3, patch_count=default_patch_count) -> Unit:
    table = sequences_table("d", "t", np.asarray(indices), length=LENGTH, channels=stored, patch_count=patch_count)
    return decode_unit(table.select(READ_COLUMNS), sequence_length=LENGTH, channels=channels, where="w")


def test_decode_unit_gives_the_stored_values_with_the_documented_dtypes() -> None:
    unit = _unit([0, 1, 2, 5])
    assert unit.rows == 4
    for name, dtype in TOKEN_COLUMNS.items():
        assert unit.columns[name].dtype == dtype and unit.columns[name].shape == (4, LENGTH)
    assert unit.episode_id.tolist() == [episode_id("d", "t", i) for i in (0, 1, 2, 5)]
    assert unit.sequence_index.dtype == np.int32 and unit.sequence_index.tolist() == [0, 1, 2, 5]
    # patch counts i % 3: 0, 1, 2, 2 -> offsets [0, 0, 1, 3, 5]
    assert unit.patch_offsets.tolist() == [0, 0, 1, 3, 5]
    assert unit.patches.shape == (5, 16, 16, 3) and unit.patches.dtype == np.uint8
    # Row 5's patches are all (5 + k) % 256 for k = 0, 1; positions (k, k+1, 0, 127).
    assert (unit.patches[3] == 5).all() and (unit.patches[4] == 6).all()
    assert unit.patch_positions.dtype == np.int16
    assert unit.patch_positions[3:].tolist() == [[0, 1, 0, 127], [1, 2, 0, 127]]
    tokens = expected_tokens(5, LENGTH, max(1, LENGTH - 1 - 5 % 4))
    tokens[:2] = GATO.image_placeholder
    assert unit.columns[out.TOKENS][3].tolist() == tokens.tolist()


def test_a_sliced_table_decodes_like_a_fresh_one() -> None:
    # Slices of Arrow arrays keep their parent's offsets: decoding must not assume they start at 0.
    table = sequences_table("d", "t", np.arange(8), length=LENGTH)
    sliced = decode_unit(table.slice(3, 4), sequence_length=LENGTH, channels=3, where="w")
    fresh = _unit([3, 4, 5, 6])
    assert sliced.patch_offsets.tolist() == fresh.patch_offsets.tolist() == [0, 0, 1, 3, 3]
    np.testing.assert_array_equal(sliced.patches, fresh.patches)
    np.testing.assert_array_equal(sliced.patch_positions, fresh.patch_positions)
    for name in TOKEN_COLUMNS:
        np.testing.assert_array_equal(sliced.columns[name], fresh.columns[name])


def test_grayscale_patches_repeat_to_the_requested_channels() -> None:
    unit = _unit([2], channels=3, stored=1)
    assert unit.patches.shape == (2, 16, 16, 3)
    assert (unit.patches[0] == 2).all() and (unit.patches[1] == 3).all()
    with pytest.raises(ValueError, match="w: image patches have 3 channels, the reader was asked for 1; "
                                         "set image_channels=3"):
        _unit([2], channels=1, stored=3)


def test_a_row_group_without_patches_has_an_empty_patch_array() -> None:
    unit = _unit([0, 3], channels=4, patch_count=lambda i: 0)
    assert unit.patches.shape == (0, 16, 16, 4) and unit.patch_positions.shape == (0, 4)
    assert unit.patch_offsets.tolist() == [0, 0, 0]


def test_malformed_row_groups_are_errors_naming_where() -> None:
    table = sequences_table("d", "t", np.arange(3), length=LENGTH)
    with pytest.raises(ValueError, match=f"here: row 0 of column 'tokens' has {LENGTH} values; "
                                         "the manifest's sequence_length is 8"):
        decode_unit(table, sequence_length=8, channels=3, where="here")
    odd = pa.array([[], [b"\x00" * 768], [b"\x00" * 768, b"\x00" * 100]], type=pa.list_(pa.binary()))
    bad_pixels = table.set_column(table.schema.get_field_index(out.PATCH_PIXELS), out.PATCH_PIXELS, odd)
    with pytest.raises(ValueError, match=r"here: image patches of \[100, 768\] bytes"):
        decode_unit(bad_pixels, sequence_length=LENGTH, channels=3, where="here")
    short = pa.array([[], [0, 1, 0, 127], [0, 1, 0, 127, 1, 2, 0]], type=pa.list_(pa.int16()))
    bad_positions = table.set_column(table.schema.get_field_index(out.PATCH_POSITIONS), out.PATCH_POSITIONS, short)
    with pytest.raises(ValueError, match="here: 11 patch position values for 3 patches; expected 4 per patch"):
        decode_unit(bad_positions, sequence_length=LENGTH, channels=3, where="here")


def _assemble(parts, batch_size: int, **kw) -> dict[str, np.ndarray]:
    args = dict(batch_size=batch_size, sequence_length=LENGTH, channels=3, max_patches=None, normalize=False)
    args.update(kw)
    return assemble(parts, **args)


def test_assemble_puts_rows_in_their_slots_and_pads_patches_to_the_widest_row() -> None:
    a, b = _unit([0, 1, 2]), _unit([4, 5])
    # Batch slots: 0 <- a row 2, 1 <- b row 1, 2 <- a row 0, 3 <- b row 0.
    batch = _assemble([(a, np.array([2, 0]), np.array([0, 2])), (b, np.array([1, 0]), np.array([1, 3]))], 4)
    assert batch[out.EPISODE_ID].tolist() == [episode_id("d", "t", i) for i in (2, 5, 0, 4)]
    assert batch[out.SEQUENCE_INDEX].tolist() == [2, 5, 0, 4]
    assert batch[out.TOKENS].shape == (4, LENGTH) and batch[out.TOKENS].dtype == np.int32
    np.testing.assert_array_equal(batch[out.TOKENS][1], b.columns[out.TOKENS][1])
    # Patch counts 2, 2, 0, 1: width 2, mask per row, padding is 0.
    assert batch[out.PATCH_PIXELS].shape == (4, 2, 16, 16, 3) and batch[out.PATCH_PIXELS].dtype == np.uint8
    assert batch[PATCH_MASK].tolist() == [[True, True], [True, True], [False, False], [True, False]]
    assert [int(batch[out.PATCH_PIXELS][s, k, 0, 0, 0]) for s, k in [(0, 0), (0, 1), (1, 0), (1, 1), (3, 0)]] == [2, 3, 5, 6, 4]
    assert (batch[out.PATCH_PIXELS][2] == 0).all() and (batch[out.PATCH_PIXELS][3, 1] == 0).all()
    assert batch[out.PATCH_POSITIONS][3].tolist() == [[0, 1, 0, 127], [0, 0, 0, 0]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=8, unique=True), st.randoms(use_true_random=False))
def test_patch_i_of_every_row_belongs_to_its_ith_image_token(indices: list[int], rnd) -> None:
    unit = _unit(indices, patch_count=lambda i: i % 4)
    slots = np.arange(len(indices))
    rnd.shuffle(slots)
    batch = _assemble([(unit, np.arange(len(indices)), slots)], len(indices))
    for slot in range(len(indices)):
        i = int(batch[out.SEQUENCE_INDEX][slot])
        image_tokens = int((batch[out.MODALITY][slot] == Modality.IMAGE).sum())
        assert image_tokens == i % 4 == int(batch[PATCH_MASK][slot].sum())
        for k in range(image_tokens):
            assert (batch[out.PATCH_PIXELS][slot, k] == (i + k) % 256).all()
            assert batch[out.PATCH_POSITIONS][slot, k].tolist() == [k, k + 1, 0, 127]


def test_normalized_pixels_are_the_documented_formula_and_padding_stays_zero() -> None:
    unit = _unit([1, 255], patch_count=lambda i: 1 if i == 1 else 2)
    batch = _assemble([(unit, np.array([0, 1]), np.array([0, 1]))], 2, normalize=True)
    pixels = batch[out.PATCH_PIXELS]
    assert pixels.dtype == np.float32 and pixels.shape == (2, 2, 16, 16, 3)
    # Row 1 (i = 1): pixel value 1; row 255: 255 then 0 (256 % 256).
    assert pixels[0, 0, 0, 0, 0] == np.float32(((1 / 255) * 2 - 1) / 4)
    assert pixels[1, 0, 0, 0, 0] == np.float32(0.25) and pixels[1, 1, 0, 0, 0] == np.float32(-0.25)
    assert (pixels[0, 1] == 0.0).all()  # padding: 0, not the value of pixel 0 (-0.25)


def test_max_patches_fixes_the_width_and_refuses_wider_rows() -> None:
    unit = _unit([0, 1])
    batch = _assemble([(unit, np.array([0, 1]), np.array([0, 1]))], 2, max_patches=5)
    assert batch[out.PATCH_PIXELS].shape[1] == 5 and batch[PATCH_MASK].tolist()[1] == [True] + [False] * 4
    wide = _unit([2])
    with pytest.raises(ValueError, match="a sequence holds 2 image patches, more than max_patches=1"):
        _assemble([(wide, np.array([0]), np.array([0]))], 1, max_patches=1)
