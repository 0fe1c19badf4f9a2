import io

import pytest
from PIL import Image

from orchestrator.media.images import MediaDecodeError, decode_image


def _jpeg(size: tuple[int, int], exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, (200, 30, 30))
    img.save(buf, format="JPEG", exif=exif) if exif is not None else img.save(buf, format="JPEG")
    return buf.getvalue()


def test_decode_downscales_and_makes_thumbnail() -> None:
    out = decode_image(_jpeg((3000, 1500)), ml_max_side=1024, thumb_side=256, max_pixels=10**8)
    assert (out.width, out.height) == (3000, 1500)
    ml = Image.open(io.BytesIO(out.ml_jpeg))
    thumb = Image.open(io.BytesIO(out.thumbnail_jpeg))
    assert max(ml.size) <= 1024 and max(ml.size) >= 700  # draft() may decode at 1/2, never below the target/2
    assert max(thumb.size) == 256


def test_exif_time_camera_and_orientation() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Make"
    exif[0x0110] = "Model X"
    exif[0x0112] = 6  # rotated 90 degrees: width and height swap
    exif.get_ifd(0x8769)[0x9003] = "2021:06:15 14:30:00"
    out = decode_image(_jpeg((400, 200), exif), ml_max_side=1024, thumb_side=256, max_pixels=10**8)
    assert out.exif["taken_at"] == "2021-06-15T14:30:00"
    assert out.exif["taken_at_ts"] == 1623767400.0
    assert out.exif["camera"] == "Make Model X"
    assert (out.width, out.height) == (200, 400)
    assert Image.open(io.BytesIO(out.ml_jpeg)).size == (200, 400)


def test_truncated_jpeg_fails_clearly() -> None:
    data = _jpeg((800, 600))
    with pytest.raises(MediaDecodeError, match=r"cannot decode|truncated"):
        decode_image(data[: len(data) // 3], ml_max_side=1024, thumb_side=256, max_pixels=10**8)


def test_garbage_fails_clearly() -> None:
    with pytest.raises(MediaDecodeError, match="not a decodable image"):
        decode_image(b"\xff\xd8\xff" + b"\x00" * 100, ml_max_side=1024, thumb_side=256, max_pixels=10**8)


def test_pixel_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(MediaDecodeError, match="too large"):
        decode_image(_jpeg((2000, 2000)), ml_max_side=1024, thumb_side=256, max_pixels=1_000_000)
