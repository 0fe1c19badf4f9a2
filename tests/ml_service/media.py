"""Real test images made locally: rendered text, public-domain photos from scikit-image."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")  # Debian: fonts-dejavu-core


def b64(image: Image.Image | np.ndarray[Any, Any], fmt: str = "PNG", **save: Any) -> str:
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    pil.save(buffer, fmt, **save)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def rendered_text(text: str, size: int = 40, canvas: tuple[int, int] = (900, 110)) -> Image.Image:
    image = Image.new("RGB", canvas, "white")
    ImageDraw.Draw(image).text(
        (30, canvas[1] // 2 - size // 2), text, font=ImageFont.truetype(str(FONT), size), fill="black"
    )
    return image


def astronaut() -> np.ndarray[Any, Any]:
    from skimage import data

    return np.asarray(data.astronaut())  # type: ignore[no-untyped-call]


def chelsea() -> np.ndarray[Any, Any]:
    from skimage import data

    return np.asarray(data.chelsea())  # type: ignore[no-untyped-call]


def cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def captioned_scene(seed: int, size: tuple[int, int] = (320, 240)) -> np.ndarray[Any, Any]:
    """A small photo-like image like scripts/bench_pipeline.py's: shapes and a printed caption."""
    rng = np.random.default_rng(seed)

    def color() -> tuple[int, int, int]:
        r, g, b = (int(v) for v in rng.integers(0, 256, 3))
        return r, g, b

    width, height = size
    image = Image.new("RGB", size, color())
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        draw.ellipse((x, y, x + int(rng.integers(20, 120)), y + int(rng.integers(20, 90))), fill=color())
    draw.rectangle((0, height - 50, width, height), fill="white")
    words = ("RIVER", "MARKET", "STATION", "MUSEUM", "HARBOUR", "COUNCIL", "STORM", "PARADE")
    draw.text(
        (8, height - 42),
        f"{words[seed % len(words)]} {seed}",
        font=ImageFont.truetype(str(FONT), 26),
        fill="black",
    )
    return np.asarray(image)
