"""Per-item failures carry a machine-readable code beside their message (docs/ml-api.md, "Item errors"), on
the real service (session fixture): clients branch on ``code`` and ``task_errors``, never on messages."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import httpx
import numpy as np
import PIL.Image

from ml_service.config import MLSettings

MAX_PIXELS = MLSettings.model_fields["max_image_pixels"].default
MAX_AUDIO_S = MLSettings.model_fields["max_audio_seconds"].default


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` with no pixels: the size check reads only its header."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"") + _chunk(b"IEND", b"")


def small_png() -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (64, 48), (200, 120, 40)).save(out, format="PNG")
    return out.getvalue()


def test_image_items_carry_codes(ml: httpx.Client) -> None:
    side = int((MAX_PIXELS * 1.2) ** 0.5)  # over ML_MAX_IMAGE_PIXELS, under Pillow's own bomb limit
    images = [
        {"id": "good", "data": b64(small_png())},
        {"id": "junk", "data": b64(b"this is not an image")},
        {"id": "not-base64", "data": "%%%"},
        {"id": "huge", "data": b64(png_header(side, side))},
    ]
    response = ml.post("/v1/analyze/images", json={"images": images, "tasks": ["tags"]})
    assert response.status_code == 200, response.text
    results = {r["id"]: r for r in response.json()["results"]}
    good = results["good"]
    assert (good["ok"], good["code"], good["task_errors"], good["error"]) == (True, None, {}, None)
    assert good["tags"] is not None
    for item, code in (("junk", "bad_input"), ("not-base64", "bad_input"), ("huge", "too_large")):
        result = results[item]
        assert (result["ok"], result["code"], result["task_errors"]) == (False, code, {}), result
        assert result["error"] and result["width"] is None and result["tags"] is None


def test_audio_items_carry_codes(ml: httpx.Client) -> None:
    second = np.zeros(16000, dtype="<i2").tobytes()
    too_long = np.zeros(int(16000 * (MAX_AUDIO_S + 2)), dtype="<i2").tobytes()
    items = [
        {"id": "good", "pcm": b64(second), "sample_rate": 16000},
        {"id": "rate", "pcm": b64(second), "sample_rate": 44100},
        {"id": "odd", "pcm": b64(b"\x00\x01\x02"), "sample_rate": 16000},
        {"id": "long", "pcm": b64(too_long), "sample_rate": 16000},
    ]
    response = ml.post("/v1/analyze/audio", json={"items": items, "tasks": []})  # only decoding
    assert response.status_code == 200, response.text
    results = {r["id"]: r for r in response.json()["results"]}
    assert (results["good"]["ok"], results["good"]["code"], results["good"]["task_errors"]) == (
        True,
        None,
        {},
    )
    assert results["good"]["duration_s"] == 1.0
    for item, code in (("rate", "bad_input"), ("odd", "bad_input"), ("long", "too_large")):
        result = results[item]
        assert (result["ok"], result["code"], result["task_errors"]) == (False, code, {}), result
        assert result["error"] and result["duration_s"] is None
