"""Images (spec section 2): padding, raster order of patches, positions, PNG decoding, errors."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

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


def png(frame: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


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


# --- pyspng fast path: the same pixels as Pillow, or Pillow itself -------------------------


def _sample_pngs() -> list[bytes]:
    """Every PNG frame of the bundled sample datasets (Atari, DMLab, ...)."""
    from pathlib import Path

    from formats.tfrecord import iter_records
    from planning.options import SAMPLES_DIR
    from tensorflow_datasets.proto import tf_example_pb2

    frames = []
    for path in sorted(Path(SAMPLES_DIR, "data").rglob("*.tfrecord-*")):
        with open(path, "rb") as f:
            for record in iter_records(f):
                for feature in tf_example_pb2.Example.FromString(record).features.feature.values():
                    frames += [v for v in feature.bytes_list.value if v[:8] == images._PNG_SIGNATURE]
    return frames


def _pillow_frames(data: list[bytes]) -> np.ndarray:
    return np.stack([images._decode_png_pillow(d, i) for i, d in enumerate(data)])


def test_pyspng_decodes_every_sample_frame_to_pillows_pixels() -> None:
    frames = _sample_pngs()
    assert len(frames) > 1000 and images._spng() is not None
    by_shape: dict[tuple[int, ...], list[bytes]] = {}
    for f in frames:
        by_shape.setdefault(images._decode_png_pillow(f, 0).shape, []).append(f)
    for group in by_shape.values():
        assert all(images._spng_format(f) and images._intact(f) for f in group)  # the fast path is taken
        fast = decode_pngs(np.array(group, dtype=object))
        assert fast.dtype == np.uint8 and np.array_equal(fast, _pillow_frames(group))


def _variants() -> list[bytes]:
    """PNGs of every colour type and bit depth, interlaced, with tRNS, palettes."""
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (19, 23), dtype=np.uint8)
    rgb = rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (19, 23, 4), dtype=np.uint8)
    la = rng.integers(0, 256, (19, 23, 2), dtype=np.uint8)
    out = [png(gray), png(rgb), png(rgba), png(la, mode="LA")]
    for img, options in [
        (Image.fromarray(gray), {"interlace": 1}),
        (Image.fromarray(rgb), {"interlace": 1}),
        (Image.fromarray(gray), {"transparency": 7}),
        (Image.fromarray(rgb), {"transparency": (1, 2, 3)}),
        (Image.fromarray(rgb).convert("P"), {}),
        (Image.fromarray(rgb).convert("P"), {"transparency": 0}),
        (Image.fromarray(gray > 128), {}),
        (Image.fromarray(gray).convert("P", colors=4), {"bits": 2}),
    ]:
        buf = io.BytesIO()
        img.save(buf, format="PNG", **options)
        out.append(buf.getvalue())
    return out


@pytest.mark.parametrize("index", range(12))
def test_every_png_kind_decodes_as_pillow_decodes_it(index: int) -> None:
    data = _variants()[index]
    assert np.array_equal(decode_pngs(np.array([data], dtype=object))[0], images._decode_png_pillow(data, 0))


def test_without_pyspng_pillow_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = np.array(_variants()[:4], dtype=object)
    fast = [decode_pngs(frames[i : i + 1]) for i in range(4)]
    monkeypatch.setattr(images, "_spng", lambda: None)
    assert all(np.array_equal(decode_pngs(frames[i : i + 1]), fast[i]) for i in range(4))


def _outcome(decode: Any, data: bytes) -> Any:
    try:
        return decode(data).tobytes()
    except TokenizationError as e:
        return (e.reason, str(e))


def test_a_damaged_png_gives_pillows_pixels_or_pillows_error() -> None:
    """pyspng ignores CRCs and adler32 and refuses truncated data Pillow accepts: every
    truncation and every flipped byte must still end as Pillow's pixels or Pillow's error."""
    good = png(np.arange(16 * 16, dtype=np.uint8).reshape(16, 16))
    damaged = [good[:n] for n in range(len(good))]
    damaged += [good[:i] + bytes([good[i] ^ mask]) + good[i + 1 :] for i in range(len(good)) for mask in (1, 0x5A, 0xFF)]
    damaged += [good + b"trailing", good[:-12] + good[-24:]]
    for data in damaged:
        fast = _outcome(lambda d: decode_pngs(np.array([d], dtype=object))[0], data)
        assert fast == _outcome(lambda d: images._decode_png_pillow(d, 0), data), data


# --- pass 1's check without decoding, pass 2's decode without checking again -------------


def _damaged(good: bytes) -> list[bytes]:
    """Every truncation and flipped byte of `good`, and trailing or repeated bytes."""
    out = [good[:n] for n in range(len(good))]
    out += [good[:i] + bytes([good[i] ^ mask]) + good[i + 1 :] for i in range(len(good)) for mask in (1, 0x5A, 0xFF)]
    return out + [good + b"trailing", good[:-12] + good[-24:]]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(
    scanlines: bytes, *, height: int, width: int, colour: int, splits: int = 1, interlace: int = 0
) -> bytes:
    """A PNG of the given filtered scanlines (each: filter type, then its bytes), its
    zlib stream cut into `splits` IDAT chunks."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, interlace)
    stream = zlib.compress(scanlines)
    cut = -(-len(stream) // splits)
    idats = b"".join(_chunk(b"IDAT", stream[i : i + cut]) for i in range(0, len(stream), cut))
    return images._PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + idats + _chunk(b"IEND", b"")


def _plain_cases() -> list[bytes]:
    """Plain PNGs: a grey frame with repeating rows, RGB and RGBA frames, every filter type
    (0-4) over random bytes in grey-alpha, a stream in 3 IDAT chunks; then each damaged
    every way."""
    rng = np.random.default_rng(11)
    grey = png(np.tile(np.arange(16, dtype=np.uint8), (12, 1)))
    rgb = png(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    rgba = png(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))
    rows = b"".join(bytes([f]) + rng.integers(0, 256, 6 * 2, dtype=np.uint8).tobytes() for f in range(5))
    filters = _raw_png(rows, height=5, width=6, colour=4)
    split = _raw_png(rows, height=5, width=6, colour=4, splits=3)
    goods = [grey, rgb, rgba, filters, split]
    return goods + [c for good in goods for c in _damaged(good)]


def test_a_plain_png_vouched_for_decodes_to_that_shape_in_pyspng_and_pillow() -> None:
    """`plain_png_shape` is only ever right: what it vouches for both decoders decode to
    the same pixels of that shape, with every integrity check on."""
    vouched = 0
    for data in _plain_cases():
        shape = images.plain_png_shape(data)
        if shape is None:
            continue
        vouched += 1
        pillow = images._decode_png_pillow(data, 0)
        fast = images._decode_png(data, 0)
        assert pillow.shape == shape and np.array_equal(fast, pillow), data
    assert vouched >= 5  # the intact ones


def test_plain_png_shape_refuses_what_it_cannot_vouch_for() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (19, 23, 3), dtype=np.uint8)
    assert images.plain_png_shape(png(rgb)) == (19, 23, 3)
    # Pillow writes no interlaced PNG (its two "interlaced" variants are plain); tRNS
    # chunks, palettes and 1-bit or 2-bit images are not plain.
    kinds = _variants()
    assert [images.plain_png_shape(k) is not None for k in kinds] == [True] * 6 + [False] * 6
    interlaced = _raw_png(bytes(1 + 4) * 2, height=1, width=4, colour=0, interlace=1)
    assert images.plain_png_shape(interlaced) is None
    bomb = zlib.compress(bytes(19 * (1 + 23 * 3) + 1))  # one byte more than the image
    good = png(rgb)
    head = good[:33]
    idat = struct.pack(">I", len(bomb)) + b"IDAT" + bomb
    idat += struct.pack(">I", zlib.crc32(idat[4:]))
    assert images.plain_png_shape(head + idat + good[-12:]) is None


def test_the_frames_shape_check_gives_decodes_shape_and_errors() -> None:
    """`png_frames_shape` and `image_grid` (pass 1) give what decoding (pass 2) gives:
    the same shape, or the same error at the same frame."""
    grey = np.arange(84 * 84, dtype=np.uint8).reshape(84, 84)
    frames = [png(grey), png(grey[::-1].copy())]
    cases = [frames, frames + [png(grey[:80])], [frames[0][:-30]] + frames, frames + [b"not a png"], []]
    cases += [frames + [p] for p in _variants()[4:]]  # frames that only a decode can judge
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


def test_verified_decode_gives_the_checked_decodes_pixels() -> None:
    """Pass 2 decodes without `_intact` only frames pass 1's verdict let through: every
    such frame (any that decodes with every check on) gives the same pixels."""
    cases = _plain_cases() + _variants() + _damaged(_variants()[4])
    decoded = 0
    for data in cases:
        try:
            checked = images._decode_png(data, 0)
        except TokenizationError:
            continue
        decoded += 1
        assert np.array_equal(images._decode_png(data, 0, verified=True), checked), data
    assert decoded > 20


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


def test_pyspng_through_its_public_load_gives_the_same_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_spng` calls pyspng's C binding directly; where that binding is laid out otherwise
    it falls back to `pyspng.load`, with the same `[H, W, C]` pixels."""
    import pyspng

    kinds = _variants()[:3]  # grey, RGB, RGBA (libspng refuses grey-alpha output: Pillow decodes it)
    direct = [images._spng()(k, images._spng_format(k)) for k in kinds]
    monkeypatch.setattr(pyspng, "_pyspng_c", None)
    images._spng.cache_clear()
    try:
        loaded = [images._spng()(k, images._spng_format(k)) for k in kinds]
    finally:
        monkeypatch.undo()
        images._spng.cache_clear()
    for a, b, k in zip(direct, loaded, kinds, strict=True):
        assert a.ndim == 3 and np.array_equal(a, b) and np.array_equal(a, images._decode_png_pillow(k, 0))
