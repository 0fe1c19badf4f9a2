"""Decoding request images: formats, orientation, transparency and the guards."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from ml_service.images import ImageDecodeError, decode_image
from tests.ml_service.media import b64

LIMITS = {"max_pixels": 40_000_000, "max_side": 1600}


def test_jpeg_decodes_to_rgb_and_bgr() -> None:
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[..., 0] = 250  # pure red survives JPEG well enough
    image = decode_image(b64(pixels, "JPEG", quality=95), **LIMITS)
    assert (image.width, image.height) == (60, 40)
    assert image.rgb.shape == (40, 60, 3) and image.scale == 1.0
    assert image.rgb[20, 30, 0] > 200 and image.rgb[20, 30, 2] < 60
    assert image.bgr[20, 30, 2] == image.rgb[20, 30, 0]


def test_large_image_is_shrunk_but_reports_original_size() -> None:
    image = decode_image(b64(np.full((300, 800, 3), 128, np.uint8)), max_pixels=10**8, max_side=200)
    assert (image.width, image.height) == (800, 300)
    assert max(image.rgb.shape[:2]) == 200
    assert image.scale == pytest.approx(4.0)


def test_exif_rotation_is_applied() -> None:
    pil = Image.fromarray(np.zeros((20, 50, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    pil.save(buffer, "JPEG", exif=exif.tobytes())
    image = decode_image(base64.b64encode(buffer.getvalue()).decode(), **LIMITS)
    assert (image.width, image.height) == (20, 50)
    assert image.rgb.shape[:2] == (50, 20)


def test_transparent_png_is_composited_on_white() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent black
    image = decode_image(b64(rgba), **LIMITS)
    assert int(image.rgb.min()) == 255


def test_greyscale_and_data_uri() -> None:
    data = "data:image/png;base64," + b64(np.full((8, 8), 77, np.uint8))
    image = decode_image(data, **LIMITS)
    assert image.rgb.shape == (8, 8, 3) and int(image.rgb[0, 0, 1]) == 77


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("%%%not-base64", "invalid base64"),
        ("", "empty"),
        (base64.b64encode(b"GIF89a but not really").decode(), "cannot decode image"),
    ],
)
def test_garbage_is_a_decode_error(data: str, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data, **LIMITS)


def test_truncated_jpeg_is_a_decode_error() -> None:
    raw = base64.b64decode(b64(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8), "JPEG"))
    with pytest.raises(ImageDecodeError):
        decode_image(base64.b64encode(raw[: len(raw) // 2]).decode(), **LIMITS)


def test_pixel_bomb_is_refused_from_the_header() -> None:
    # 1-bit 10000x10000 PNG: ~20 KB on the wire, 100 megapixels (300 MB as RGB) once decoded.
    bomb = b64(Image.new("1", (10_000, 10_000)))
    assert len(bomb) < 100_000
    with pytest.raises(ImageDecodeError, match="exceeds"):
        decode_image(bomb, max_pixels=40_000_000, max_side=1600)
