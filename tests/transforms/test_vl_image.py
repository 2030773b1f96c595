"""Vision-language images (spec section 8): exact resize sizes, the centre crop, EXIF
orientation, RGB conversion, and the fast JPEG decoder giving Pillow's pixels exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from transforms import vl_image
from transforms.errors import CORRUPT_IMAGE, TokenizationError
from transforms.vl_image import decode_rgb, image_to_patches, resized_size


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _scene(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * 1000 + height)
    coarse = (rng.random((max(1, height // 8), max(1, width // 8), 3)) * 255).astype(np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR).convert(mode)


def _pillow_reference(data: bytes, size: int) -> np.ndarray:
    """Spec section 8 with Pillow alone, written out step by step."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    w, h = image.size
    if w <= h:
        new = (size, int(np.floor(h * size / w + 0.5)))
    else:
        new = (int(np.floor(w * size / h + 0.5)), size)
    image = image.resize(new, Image.Resampling.BILINEAR)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


@pytest.mark.parametrize(
    ("width", "height", "size", "expected"),
    [
        (300, 200, 192, (288, 192)),
        (200, 300, 192, (192, 288)),
        (192, 192, 192, (192, 192)),
        (3, 2, 3, (5, 3)),  # 4.5 rounds half up
        (5, 2, 3, (8, 3)),  # 7.5 rounds half up
        (640, 427, 192, (288, 192)),  # 287.775... -> 288
        (16, 1000, 16, (16, 1000)),
    ],
)
def test_resized_size_is_exact_round_half_up(width: int, height: int, size: int, expected: tuple[int, int]) -> None:
    assert resized_size(width, height, size) == expected


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("jpeg rgb 4:2:0", _encode(_scene(320, 240), "JPEG", quality=90)),
        ("jpeg rgb 4:4:4", _encode(_scene(240, 320), "JPEG", quality=95, subsampling=0)),
        ("jpeg progressive", _encode(_scene(250, 170), "JPEG", progressive=True)),
        ("jpeg grayscale", _encode(_scene(200, 150, "L"), "JPEG")),
        ("jpeg cmyk", _encode(_scene(200, 150, "CMYK"), "JPEG")),
        ("png rgba", _encode(_scene(100, 60, "RGBA"), "PNG")),
        ("png palette", _encode(_scene(90, 70).convert("P"), "PNG")),
        ("webp", _encode(_scene(160, 120), "WEBP", quality=80)),
    ],
)
def test_decoded_pixels_equal_pillow_alone(name: str, data: bytes) -> None:
    assert np.array_equal(decode_rgb(data, size=64), _pillow_reference(data, 64)), name


def test_the_fast_decoder_and_pillow_give_the_same_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(_scene(640, 480), "JPEG", quality=85)
    fast = decode_rgb(data, size=192)
    monkeypatch.setattr(vl_image, "_simplejpeg", lambda: None)
    assert np.array_equal(fast, decode_rgb(data, size=192))


def test_exif_orientation_is_applied() -> None:
    # A wide image stored with orientation 6 (rotate 90 clockwise to display) is tall.
    image = Image.new("RGB", (64, 32), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 32, 32))  # left half red
    exif = image.getexif()
    exif[0x0112] = 6
    data = _encode(image, "JPEG", quality=95, exif=exif.tobytes())
    out = decode_rgb(data, size=32)  # displayed 32 wide x 64 tall -> crop rows 16..48
    assert out.shape == (32, 32, 3)
    # Rotated clockwise, the red left half is on top: the crop's top rows are red-ish.
    assert out[0, 16, 0] > 200 and out[0, 16, 2] < 60
    assert out[31, 16, 2] > 200 and out[31, 16, 0] < 60
    assert np.array_equal(out, _pillow_reference(data, 32))


def test_the_crop_is_centred_at_floor_of_half_the_excess() -> None:
    # 48 x 16 PNG whose columns are numbered: resized to S=16 the width stays 48 (no
    # resampling at scale 1), so the crop keeps columns 16..31.
    columns = np.tile(np.arange(48, dtype=np.uint8)[None, :, None], (16, 1, 3))
    out = decode_rgb(_encode(Image.fromarray(columns), "PNG"), size=16)
    assert out[0, :, 0].tolist() == list(range(16, 32))


@pytest.mark.parametrize(
    "data",
    [b"not an image", _encode(_scene(100, 80), "JPEG")[:400], _encode(_scene(64, 64), "PNG")[:100], b""],
)
def test_bytes_pillow_cannot_decode_are_corrupt_image(data: bytes) -> None:
    with pytest.raises(TokenizationError) as info:
        decode_rgb(data, size=32)
    assert info.value.reason == CORRUPT_IMAGE


def test_patches_are_raster_order_with_their_positions() -> None:
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:16, 16:] = 7  # top-right patch
    patches, positions = image_to_patches(_encode(Image.fromarray(pixels), "PNG"), size=32)
    assert patches.shape == (4, 768) and positions.tolist() == [
        [0, 64, 0, 64], [0, 64, 64, 127], [64, 127, 0, 64], [64, 127, 64, 127]
    ]
    assert patches[1].min() == patches[1].max() == 7 and patches[[0, 2, 3]].max() == 0


@pytest.mark.parametrize("size", [0, 8, 200])
def test_a_size_not_a_multiple_of_16_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        image_to_patches(b"", size=size)
