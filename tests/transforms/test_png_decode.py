"""transforms/png_decode.py: a PNG frame decodes to Pillow's pixels or fails with Pillow's
error, through pyspng where that gives the same; the plain-PNG check vouches only for frames
both decoders decode alike; a verified frame decodes without its integrity checked again."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
import pytest

from tests.transforms.png_fixtures import chunk, damaged, png, raw_png, variants
from transforms import png_decode
from transforms.errors import TokenizationError
from transforms.images import decode_pngs


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
                    frames += [v for v in feature.bytes_list.value if v[:8] == png_decode._PNG_SIGNATURE]
    return frames


def _pillow_frames(data: list[bytes]) -> np.ndarray:
    return np.stack([png_decode.decode_png_pillow(d, i) for i, d in enumerate(data)])


def test_pyspng_decodes_every_sample_frame_to_pillows_pixels() -> None:
    frames = _sample_pngs()
    assert len(frames) > 1000 and png_decode.spng_decoder() is not None
    by_shape: dict[tuple[int, ...], list[bytes]] = {}
    for f in frames:
        by_shape.setdefault(png_decode.decode_png_pillow(f, 0).shape, []).append(f)
    for group in by_shape.values():
        assert all(png_decode.spng_format(f) and png_decode._intact(f) for f in group)  # the fast path is taken
        fast = decode_pngs(np.array(group, dtype=object))
        assert fast.dtype == np.uint8 and np.array_equal(fast, _pillow_frames(group))


@pytest.mark.parametrize("index", range(12))
def test_every_png_kind_decodes_as_pillow_decodes_it(index: int) -> None:
    data = variants()[index]
    assert np.array_equal(decode_pngs(np.array([data], dtype=object))[0], png_decode.decode_png_pillow(data, 0))


def test_without_pyspng_pillow_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = np.array(variants()[:4], dtype=object)
    fast = [decode_pngs(frames[i : i + 1]) for i in range(4)]
    monkeypatch.setattr(png_decode, "spng_decoder", lambda: None)
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
        assert fast == _outcome(lambda d: png_decode.decode_png_pillow(d, 0), data), data


# --- pass 1's check without decoding, pass 2's decode without checking again -------------


def _plain_cases() -> list[bytes]:
    """Plain PNGs: a grey frame with repeating rows, RGB and RGBA frames, every filter type
    (0-4) over random bytes in grey-alpha, a stream in 3 IDAT chunks; then each damaged
    every way."""
    rng = np.random.default_rng(11)
    grey = png(np.tile(np.arange(16, dtype=np.uint8), (12, 1)))
    rgb = png(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    rgba = png(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))
    rows = b"".join(bytes([f]) + rng.integers(0, 256, 6 * 2, dtype=np.uint8).tobytes() for f in range(5))
    filters = raw_png(rows, height=5, width=6, colour=4)
    split = raw_png(rows, height=5, width=6, colour=4, splits=3)
    ihdr = struct.pack(">IIBBBBB", 6, 5, 8, 4, 0, 0, 0)
    trailing = (  # bytes after the zlib stream, inside the IDAT: Pillow and pyspng ignore them
        png_decode._PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows) + b"\x00junk")
        + chunk(b"IEND", b"")
    )
    goods = [grey, rgb, rgba, filters, split, trailing]
    return goods + [c for good in goods for c in damaged(good)]


def test_a_plain_png_vouched_for_decodes_to_that_shape_in_pyspng_and_pillow() -> None:
    """`plain_png_shape` is only ever right: what it vouches for both decoders decode to
    the same pixels of that shape, with every integrity check on."""
    vouched = 0
    for data in _plain_cases():
        shape = png_decode.plain_png_shape(data)
        if shape is None:
            continue
        vouched += 1
        pillow = png_decode.decode_png_pillow(data, 0)
        fast = png_decode.decode_png(data, 0)
        assert pillow.shape == shape and np.array_equal(fast, pillow), data
    assert vouched >= 6  # the intact ones


def test_plain_png_shape_refuses_what_it_cannot_vouch_for() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (19, 23, 3), dtype=np.uint8)
    assert png_decode.plain_png_shape(png(rgb)) == (19, 23, 3)
    # Pillow writes no interlaced PNG (its two "interlaced" variants are plain); tRNS
    # chunks, palettes and 1-bit or 2-bit images are not plain.
    kinds = variants()
    assert [png_decode.plain_png_shape(k) is not None for k in kinds] == [True] * 6 + [False] * 6
    interlaced = raw_png(bytes(1 + 4) * 2, height=1, width=4, colour=0, interlace=1)
    assert png_decode.plain_png_shape(interlaced) is None
    bomb = zlib.compress(bytes(19 * (1 + 23 * 3) + 1))  # one byte more than the image
    good = png(rgb)
    head = good[:33]
    idat = struct.pack(">I", len(bomb)) + b"IDAT" + bomb
    idat += struct.pack(">I", zlib.crc32(idat[4:]))
    assert png_decode.plain_png_shape(head + idat + good[-12:]) is None


def test_verified_decode_gives_the_checked_decodes_pixels() -> None:
    """Pass 2 decodes without `_intact` only frames pass 1's verdict let through: every
    such frame (any that decodes with every check on) gives the same pixels."""
    cases = _plain_cases() + variants() + damaged(variants()[4])
    decoded = 0
    for data in cases:
        try:
            checked = png_decode.decode_png(data, 0)
        except TokenizationError:
            continue
        decoded += 1
        assert np.array_equal(png_decode.decode_png(data, 0, verified=True), checked), data
    assert decoded > 20


def test_pyspng_through_its_public_load_gives_the_same_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_spng` calls pyspng's C binding directly; where that binding is laid out otherwise
    it falls back to `pyspng.load`, with the same `[H, W, C]` pixels."""
    import pyspng

    kinds = variants()[:3]  # grey, RGB, RGBA (libspng refuses grey-alpha output: Pillow decodes it)
    direct = [png_decode.spng_decoder()(k, png_decode.spng_format(k)) for k in kinds]
    monkeypatch.setattr(pyspng, "_pyspng_c", None)
    png_decode.spng_decoder.cache_clear()
    try:
        loaded = [png_decode.spng_decoder()(k, png_decode.spng_format(k)) for k in kinds]
    finally:
        monkeypatch.undo()
        png_decode.spng_decoder.cache_clear()
    for a, b, k in zip(direct, loaded, kinds, strict=True):
        assert a.ndim == 3 and np.array_equal(a, b) and np.array_equal(a, png_decode.decode_png_pillow(k, 0))


@pytest.mark.parametrize("libdeflate", [True, False])
def test_the_inflate_check_is_the_same_with_libdeflate_or_zlib(libdeflate: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """`plain_png_shape` vouches for the same PNGs whichever inflater is installed."""
    cases = _plain_cases()
    with_libdeflate = [png_decode.plain_png_shape(c) for c in cases]
    if not libdeflate:
        monkeypatch.setattr(png_decode, "_libdeflate", lambda: None)
    assert [png_decode.plain_png_shape(c) for c in cases] == with_libdeflate
    stream = zlib.compress(bytes(40))
    assert png_decode._inflated(stream, 40) == bytes(40)
    assert png_decode._inflated(stream, 39) is None and png_decode._inflated(stream, 41) is None
    assert png_decode._inflated(stream[:-1], 40) is None and png_decode._inflated(stream + b"more", 40) == bytes(40)
