"""Images (spec section 2): padding, raster order of patches, positions, PNG decoding, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.transforms.png_fixtures import png, variants
from transforms import images
from transforms.errors import BAD_SHAPE, CORRUPT_IMAGE, IMAGE_NOT_UINT8, TokenizationError
from transforms.images import (
    as_frames,
    decode_pngs,
    image_patches,
    interval_bins,
    pad_frames,
    padded_size,
    patch_positions,
    patchify,
    resize_frames,
    unpatchify,
)


def crafted(rows: int, cols: int, channels: int) -> np.ndarray:
    """A frame whose patch (r, c) is filled with 10*r + c in channel 0 and 100 + ch elsewhere."""
    frame = np.zeros((rows * 16, cols * 16, channels), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            frame[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16, 0] = 10 * r + c
    for ch in range(1, channels):
        frame[..., ch] = 100 + ch
    return frame


def test_patches_are_in_raster_order() -> None:
    frame = crafted(2, 3, 3)
    patches = patchify(frame[None])
    assert patches.shape == (1, 6, 16 * 16 * 3)
    # HWC inside a patch: channel 0 of every pixel is every 3rd byte.
    assert patches[0, :, 0::3].min(axis=1).tolist() == [0, 1, 2, 10, 11, 12]
    assert patches[0, :, 0::3].max(axis=1).tolist() == [0, 1, 2, 10, 11, 12]
    assert (patches[0, :, 1::3] == 101).all() and (patches[0, :, 2::3] == 102).all()


def test_pixel_order_inside_a_patch_is_row_major_hwc() -> None:
    frame = np.arange(16 * 16 * 2, dtype=np.uint16).reshape(16, 16, 2) % 256
    patches = patchify(frame.astype(np.uint8)[None])
    assert patches[0, 0].tolist() == frame.astype(np.uint8).ravel().tolist()


def test_padding_is_zeros_bottom_right() -> None:
    frame = np.full((1, 20, 17, 1), 7, dtype=np.uint8)
    padded = pad_frames(frame)
    assert padded.shape == (1, 32, 32, 1)
    assert (padded[0, :20, :17] == 7).all()
    assert padded[0, 20:].max() == 0 and padded[0, :, 17:].max() == 0
    assert padded_size((84, 84)) == (96, 96) and padded_size((16, 32)) == (16, 32)
    assert padded_size((84, 84), size=(64, 48)) == (64, 48)
    already = np.zeros((2, 32, 16, 3), dtype=np.uint8)
    assert pad_frames(already) is already


def test_84x84_atari_frame_is_a_6x6_grid() -> None:
    patches, rows, cols = image_patches(np.zeros((5, 84, 84), dtype=np.uint8))
    assert (rows, cols) == (6, 6) and patches.shape == (5, 36, 256)


def test_patch_positions_quantize_the_unit_square() -> None:
    # 3 rows: bounds 0, 1/3, 2/3, 1 -> floor(128 x) = 0, 42, 85, 128 -> clamp 127.
    assert interval_bins(3)[0].tolist() == [0, 42, 85]
    assert interval_bins(3)[1].tolist() == [42, 85, 127]
    assert interval_bins(1)[0].tolist() == [0] and interval_bins(1)[1].tolist() == [127]
    pos = patch_positions((2, 3))
    assert pos.dtype == np.int16
    assert pos.tolist() == [
        [0, 64, 0, 42], [0, 64, 42, 85], [0, 64, 85, 127],
        [64, 127, 0, 42], [64, 127, 42, 85], [64, 127, 85, 127],
    ]
    # 128 or more rows: every bound stays in [0, 127].
    lo, hi = interval_bins(300)
    assert lo.min() == 0 and hi.max() == 127 and (hi >= lo).all()


@settings(max_examples=50)
@given(
    st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)


def test_unpatchify_inverts_patchify(rows: int, cols: int, channels: int, t: int, seed: int) -> None:
    frames = np.random.default_rng(seed).integers(
        0, 256, (t, rows * 16, cols * 16, channels), dtype=np.uint8
    )
    assert np.array_equal(unpatchify(patchify(frames), rows=rows, cols=cols, channels=channels), frames)


def test_leaf_forms() -> None:
    hw = np.zeros((2, 16, 16), dtype=np.uint8)
    assert as_frames(hw).shape == (2, 16, 16, 1)
    with pytest.raises(TokenizationError) as info:
        as_frames(np.zeros((2, 16, 16), dtype=np.float32))
    assert info.value.reason == IMAGE_NOT_UINT8 and "float32" in str(info.value)
    with pytest.raises(TokenizationError) as info:
        as_frames(np.zeros((2, 16), dtype=np.uint8))
    assert info.value.reason == BAD_SHAPE


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3), ("RGBA", 4)])
def test_png_bytes_decode_to_frames(mode: str, channels: int) -> None:
    rng = np.random.default_rng(1)
    shape = (20, 24) if channels == 1 else (20, 24, channels)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)]
    leaf = np.array([png(f) for f in frames] + [], dtype=object)
    decoded = as_frames(leaf)
    assert decoded.shape == (3, 20, 24, channels)
    assert np.array_equal(decoded.reshape((3,) + shape), np.stack(frames))


def test_png_errors_name_the_frame() -> None:
    good = png(np.zeros((16, 16), dtype=np.uint8))
    with pytest.raises(TokenizationError) as info:
        decode_pngs(np.array([good, b"not a png"], dtype=object))
    assert (info.value.reason, info.value.timestep) == (CORRUPT_IMAGE, 1)
    other = png(np.zeros((32, 16), dtype=np.uint8))
    with pytest.raises(TokenizationError) as info:
        decode_pngs(np.array([good, good, other], dtype=object))
    assert (info.value.reason, info.value.timestep) == (BAD_SHAPE, 2)
    sixteen_bit = png(np.zeros((16, 16), dtype=np.uint16))
    with pytest.raises(TokenizationError) as info:
        decode_pngs(np.array([sixteen_bit], dtype=object))
    assert info.value.reason == IMAGE_NOT_UINT8


def test_resize_when_declared() -> None:
    frames = np.full((2, 84, 84, 2), 200, dtype=np.uint8)
    resized = resize_frames(frames, size=(64, 48))
    assert resized.shape == (2, 64, 48, 2) and (resized == 200).all()
    patches, rows, cols = image_patches(frames, size=(64, 48))
    assert (rows, cols) == (4, 3)
    with pytest.raises(ValueError, match="multiples of 16"):
        resize_frames(frames, size=(60, 48))


def test_a_corrupt_image_message_holds_no_memory_address() -> None:
    """Pillow names its stream (`<_io.BytesIO object at 0x...>`); a reject's text must be
    the same on every run, so the address is dropped."""
    from transforms.errors import TokenizationError
    from transforms.images import decode_pngs

    with pytest.raises(TokenizationError) as first:
        decode_pngs(np.array([b"\x89PNG\r\n\x1a\nnot an image"], dtype=object))
    assert " at 0x" not in str(first.value)
    assert "cannot be decoded" in str(first.value)


def test_the_frames_shape_check_gives_decodes_shape_and_errors() -> None:
    """`png_frames_shape` and `image_grid` (pass 1) give what decoding (pass 2) gives:
    the same shape, or the same error at the same frame."""
    grey = np.arange(84 * 84, dtype=np.uint8).reshape(84, 84)
    frames = [png(grey), png(grey[::-1].copy())]
    cases = [frames, frames + [png(grey[:80])], [frames[0][:-30]] + frames, frames + [b"not a png"], []]
    cases += [frames + [p] for p in variants()[4:]]  # frames that only a decode can judge
    for case in cases:
        leaf = np.array(case, dtype=object)
        try:
            expected: Any = decode_pngs(leaf).shape
        except TokenizationError as e:
            expected = (e.reason, str(e))
        try:
            got: Any = images.png_frames_shape(leaf)
        except TokenizationError as e:
            got = (e.reason, str(e))
        assert got == expected
    rows, cols, channels = images.image_grid(np.array(frames, dtype=object))
    patches, prows, pcols = images.image_patches(np.array(frames, dtype=object))
    assert (rows, cols, channels) == (prows, pcols, patches.shape[2] // 256) == (6, 6, 1)
    assert images.image_grid(np.array(frames, dtype=object), size=(32, 48)) == (2, 3, 1)
    with pytest.raises(ValueError, match="multiples of 16"):
        images.image_grid(np.array(frames, dtype=object), size=(30, 48))


@pytest.mark.parametrize(("frames", "height", "width", "channels"), [(1, 20, 9, 3), (64, 84, 84, 1), (150, 7, 33, 2), (65, 32, 16, 4)])
def test_chunked_png_patches_are_decode_pad_patchify(frames: int, height: int, width: int, channels: int) -> None:
    """`png_patches` decodes 64 frames at a time: its patches are those of decoding every
    frame, padding and cutting, across chunk edges (64, 65, 150 frames) and channel counts."""
    rng = np.random.default_rng(frames)
    pixels = rng.integers(0, 256, (frames, height, width, channels), dtype=np.uint8)
    mode = {1: None, 2: "LA", 3: None, 4: None}[channels]
    leaf = np.array([png(p[..., 0] if channels == 1 else p, mode=mode) for p in pixels], dtype=object)
    patches, rows, cols = images.png_patches(leaf)
    expected = images.patchify(images.pad_frames(decode_pngs(leaf)))
    assert (rows, cols) == (-(-height // 16), -(-width // 16))
    assert patches.shape == expected.shape and np.array_equal(patches, expected)
    assert np.array_equal(images.image_patches(leaf)[0], expected)


def test_chunked_png_patches_name_a_bad_frame_in_a_later_chunk() -> None:
    good = [png(np.full((20, 20), v, dtype=np.uint8)) for v in range(70)]
    for bad, reason in [(png(np.zeros((20, 21), np.uint8)), BAD_SHAPE), (b"\x89PNG\r\n\x1a\nbroken", CORRUPT_IMAGE)]:
        leaf = np.array(good[:66] + [bad] + good[66:], dtype=object)
        with pytest.raises(TokenizationError) as expected:
            decode_pngs(leaf)
        with pytest.raises(TokenizationError) as got:
            images.png_patches(leaf)
        assert (got.value.reason, got.value.timestep, str(got.value)) == (reason, 66, str(expected.value))
