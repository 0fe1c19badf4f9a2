"""Decoding request images (base64 → RGB pixels) with guards against hostile input."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
import PIL.Image
from PIL import ImageOps

from ml_service.errors import ErrorCode
from ml_service.models.base import Image

_EXIF_ORIENTATION = 0x0112
# EXIF orientations that rotate by 90 degrees, so width and height trade places.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


class ImageDecodeError(ValueError):
    """The item's data is not an image this service can use; ``code`` says how (docs/ml-api.md)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _b64decode(data: str) -> bytes:
    # Accept data URIs ("data:image/png;base64,...") as a convenience for browser-made requests.
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"invalid base64: {exc}") from None


def decode_image(data: str, *, max_pixels: int, max_side: int) -> Image:
    """Decode one base64 image, upright (EXIF orientation applied), at most ``max_side`` long.

    Raises ``ImageDecodeError`` for anything that is not a usable image, including images with more
    than ``max_pixels`` pixels (checked from the header, before any pixel is decoded).
    """
    raw = _b64decode(data)
    if not raw:
        raise ImageDecodeError("empty image data")
    try:
        # Pillow's own bomb check reads a process-wide global and only warns below 2x its limit;
        # turn the warning into an error and apply this service's limit from the header first.
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            opened = PIL.Image.open(io.BytesIO(raw))
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"image of {width}x{height} pixels exceeds {max_pixels} pixels", ErrorCode.TOO_LARGE
                )
            # JPEG can decode at 1/2, 1/4, 1/8 scale for free: far less work for large photos.
            if opened.getexif().get(_EXIF_ORIENTATION, 1) in _SWAPPING_ORIENTATIONS:
                width, height = height, width
            opened.draft("RGB", (max_side, max_side))
            pil = _to_rgb(ImageOps.exif_transpose(opened))
            if max(pil.size) > max_side:
                pil.thumbnail((max_side, max_side), PIL.Image.Resampling.BILINEAR, reducing_gap=2.0)
            rgb = np.asarray(pil, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except PIL.UnidentifiedImageError:
        raise ImageDecodeError("cannot decode image: unknown format or corrupt data") from None
    except (PIL.Image.DecompressionBombWarning, PIL.Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}", ErrorCode.TOO_LARGE) from None
    except (OSError, ValueError, SyntaxError) as exc:
        # Pillow reports corrupt and unknown data as OSError/UnidentifiedImageError, and some
        # truncated or malformed files as ValueError or SyntaxError.
        raise ImageDecodeError(f"cannot decode image: {exc}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ImageDecodeError(f"unexpected pixel layout {rgb.shape}")
    rgb = np.ascontiguousarray(rgb)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return Image(rgb=rgb, bgr=bgr, width=width, height=height)


def _to_rgb(pil: PIL.Image.Image) -> PIL.Image.Image:
    if pil.mode == "RGB":
        return pil
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        # Composite transparent images onto white: dark text on a transparent canvas would
        # otherwise turn black-on-black (and unreadable for OCR).
        rgba = pil.convert("RGBA")
        canvas = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(canvas, rgba).convert("RGB")
    if pil.mode == "I;16" or pil.mode.startswith("I;16"):
        # 16-bit greyscale: scale to 8 bits instead of clipping.
        pixels = np.asarray(pil, dtype=np.uint16) >> 8
        return PIL.Image.fromarray(pixels.astype(np.uint8)).convert("RGB")
    return pil.convert("RGB")
