"""Routes for what a search hit points to: its record, its thumbnail, the original file (HTTP Range)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse

from orchestrator.api.deps import ServicesDep
from orchestrator.pipeline.stages.prepare import chunk_thumbnail_path, thumbnail_path
from orchestrator.security import is_within

router = APIRouter(tags=["media"])

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_COLLECTION = r"^[A-Za-z0-9_-]{1,64}$"


async def _payload(
    services: ServicesDep, media_id: str, collection: str | None
) -> tuple[str, dict[str, Any]]:
    if not _UUID.match(media_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such media")
    name = collection or services.settings.default_collection
    if not await services.store.collection_exists(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    found = await services.store.retrieve(name, [media_id])
    if media_id not in found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such media")
    return name, found[media_id]


@router.get("/media/{media_id}")
async def media_record(
    media_id: str, services: ServicesDep, collection: str | None = Query(None, pattern=_COLLECTION)
) -> dict[str, Any]:
    name, payload = await _payload(services, media_id, collection)
    return {"id": media_id, "collection": name, **payload}


@router.get("/media/{media_id}/thumbnail")
async def media_thumbnail(
    media_id: str, services: ServicesDep, collection: str | None = Query(None, pattern=_COLLECTION)
) -> FileResponse:
    _, payload = await _payload(services, media_id, collection)
    thumbs, content_hash = services.settings.thumbnails_dir, str(payload.get("content_hash", ""))
    path = thumbnail_path(thumbs, content_hash)
    if payload.get("media_type") == "video":  # each chunk has its own (its middle keyframe)
        path = chunk_thumbnail_path(thumbs, content_hash, int(payload.get("chunk_index") or 0))
    if not await asyncio.to_thread(path.is_file):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no thumbnail for this media")
    return FileResponse(path, media_type="image/jpeg", headers={"cache-control": "public, max-age=86400"})


@router.get("/media/{media_id}/stream")
async def media_stream(
    media_id: str, services: ServicesDep, collection: str | None = Query(None, pattern=_COLLECTION)
) -> FileResponse:
    """The original file; Starlette's FileResponse answers Range requests (a player can seek)."""
    _, payload = await _payload(services, media_id, collection)
    roots = services.settings.allowed_root_paths
    for candidate in payload.get("paths") or []:
        path = Path(candidate)
        real = await asyncio.to_thread(os.path.realpath, path)
        if any(is_within(Path(real), root) for root in roots) and await asyncio.to_thread(path.is_file):
            return FileResponse(path, media_type=str(payload.get("mime") or "application/octet-stream"))
    raise HTTPException(status.HTTP_404_NOT_FOUND, "the original file is no longer available")
