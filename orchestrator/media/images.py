"""Image decoding off the event loop: EXIF, orientation, a stored thumbnail and a downscaled copy for ML."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
# Longest text kept from an EXIF field: a camera's make and model are tens of characters, but a hostile
# file's fill its 64 KB segment, and the field goes into every point's payload and search hit.
MAX_EXIF_TEXT = 128
# EXIF orientation -> the transpose that shows the image upright (what ImageOps.exif_transpose applies).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class MediaDecodeError(Exception):
    """The file's content cannot be decoded as the media it claims to be; the message is user-facing."""


@dataclass(frozen=True, slots=True)
class DecodedImage:
    width: int
    height: int
    exif: dict[str, Any]
    ml_jpeg: bytes
    thumbnail_jpeg: bytes


def decode_image(data: bytes, *, ml_max_side: int, thumb_side: int, max_pixels: int) -> DecodedImage:
    """Decode fully (a truncated file fails here, not later), apply EXIF orientation, make both copies."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                raise MediaDecodeError(
                    f"image too large: {img.width}x{img.height} exceeds {max_pixels} pixels"
                )
            exif = _exif_fields(img)
            width, height = img.width, img.height
            if img.format == "JPEG":
                img.draft("RGB", (ml_max_side, ml_max_side))  # DCT scaling: decode at reduced size
            img.load()
            rgb = _reduced_rgb(img, ml_max_side)
    except MediaDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise MediaDecodeError("not a decodable image") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaDecodeError(f"cannot decode image: {exc}") from exc
    upright = _UPRIGHT.get(exif.get("orientation", 1))
    if upright is not None:
        rgb = rgb.transpose(upright)
    if exif.get("orientation") in (5, 6, 7, 8):
        width, height = height, width
    ml_copy = _fit(rgb, ml_max_side)
    thumb = _fit(ml_copy, thumb_side)
    return DecodedImage(
        width=width,
        height=height,
        exif=exif,
        ml_jpeg=_jpeg(ml_copy, quality=90),
        thumbnail_jpeg=_jpeg(thumb, quality=80),
    )


def write_thumbnail(path: Path, jpeg: bytes) -> None:
    """Write atomically (tmp + rename) so a reader never sees half a thumbnail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(jpeg)
    tmp.replace(path)


def _reduced_rgb(img: Image.Image, side: int) -> Image.Image:
    """The loaded image as RGB, box-reduced by a whole factor to no less than twice `side` (the step
    Pillow's thumbnail takes first anyway), without a second full-size copy: a large PNG or TIFF (a
    decompression bomb just under the pixel limit: a few hundred KB of file) costs its decoded size about
    once, not three times (decoded, turned upright, made RGB). Orientation is applied to the small copy."""
    if img.mode not in ("L", "RGB"):  # Pillow reduces only some modes; these need RGB anyway
        rgb = img.convert("RGB")
        img.close()  # the decoded original's pixels go now, not when the caller lets go of it
        img = rgb
    factor = int(max(img.size) / side / 2)
    if factor > 1:
        img = img.reduce(factor)
    return img if img.mode == "RGB" else img.convert("RGB")


def _fit(img: Image.Image, side: int) -> Image.Image:
    if max(img.size) <= side:
        return img
    copy = img.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    return copy


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _exif_fields(img: Image.Image) -> dict[str, Any]:
    """taken_at (ISO 8601 + epoch seconds), camera, orientation and GPS where the file has them."""
    try:
        exif = img.getexif()
    except (OSError, ValueError, SyntaxError):
        return {}
    out: dict[str, Any] = {}
    sub = exif.get_ifd(_EXIF_IFD)
    raw_time = sub.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    taken = _parse_exif_time(raw_time)
    if taken is not None:
        out["taken_at"] = taken.isoformat()
        out["taken_at_ts"] = taken.replace(tzinfo=UTC).timestamp()  # EXIF has no zone: read as UTC
    make, model = exif.get(ExifTags.Base.Make), exif.get(ExifTags.Base.Model)
    camera = " ".join(filter(None, (_text(make), _text(model))))
    if camera:
        out["camera"] = camera
    orientation = exif.get(ExifTags.Base.Orientation)
    if isinstance(orientation, int):
        out["orientation"] = orientation
    gps = _gps(exif.get_ifd(_GPS_IFD))
    if gps is not None:
        out["gps"] = gps
    return out


def _text(value: object) -> str:
    """An EXIF text field as payload text: printable characters only, at most MAX_EXIF_TEXT of them."""
    if not value:
        return ""
    printable = "".join(c for c in str(value)[: 4 * MAX_EXIF_TEXT] if c.isprintable())
    return printable.strip()[:MAX_EXIF_TEXT].rstrip()


def _parse_exif_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _gps(ifd: dict[int, Any]) -> dict[str, float] | None:
    try:
        lat = _dms(ifd[2]) * (-1 if ifd.get(1) == "S" else 1)
        lon = _dms(ifd[4]) * (-1 if ifd.get(3) == "W" else 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return {"lat": round(lat, 7), "lon": round(lon, 7)}


def _dms(values: Any) -> float:
    d, m, s = (float(v) for v in values)
    return d + m / 60 + s / 3600


def taken_at_fields(iso_time: str) -> dict[str, Any]:
    """`taken_at`/`taken_at_ts` from an ISO 8601 time (a video's creation_time); nothing when unparseable.
    A time without a zone is read as UTC, as EXIF times are."""
    try:
        taken = datetime.fromisoformat(iso_time.strip().replace("Z", "+00:00"))
    except ValueError:
        return {}
    if taken.tzinfo is None:
        taken = taken.replace(tzinfo=UTC)
    if taken.year < 1971:  # muxers write 1970/1904 epochs when they know nothing
        return {}
    return {"taken_at": taken.isoformat(), "taken_at_ts": taken.timestamp()}
