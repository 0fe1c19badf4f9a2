"""Where thumbnails live: one JPEG per content (an image, or a video's first chunk), and one per video
chunk (its middle keyframe), under `<thumbnails_dir>/<first two hex digits>/`. Written by the prepare
stage, served by the API; both name them only through these functions."""

from __future__ import annotations

from pathlib import Path


def thumbnail_path(thumbnails_dir: Path, content_hash: str) -> Path:
    return thumbnails_dir / content_hash[:2] / f"{content_hash}.jpg"


def chunk_thumbnail_path(
    thumbnails_dir: Path, content_hash: str, index: int, plan: str | None = None
) -> Path:
    """A video chunk's thumbnail (its middle keyframe) under one chunk plan (manifest.plan_digest: another
    CHUNK_SECONDS cuts other chunks, so a rebuilt version never overwrites the one still searched).
    None: the name of points written before plans were recorded."""
    if plan is None:
        return thumbnails_dir / content_hash[:2] / f"{content_hash}_{index}.jpg"
    return thumbnails_dir / content_hash[:2] / f"{content_hash}_{plan}_{index}.jpg"
