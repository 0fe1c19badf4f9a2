"""Routes for what a search hit points to: its record, its thumbnail, the original file (HTTP Range)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, status

from orchestrator.api.deps import ServicesDep
from orchestrator.api.files import OpenedFileResponse
from orchestrator.media.thumbnails import chunk_thumbnail_path, thumbnail_path
from orchestrator.people_view import timeline
from orchestrator.security import OpenedFile, is_content_hash, open_first_within

router = APIRouter(tags=["media"])

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_COLLECTION = r"^[A-Za-z0-9_-]{1,64}$"
_PLAN = re.compile(r"[0-9a-f]{16}")  # a chunk plan's digest (manifest.plan_digest), part of a file name


async def _payload(
    services: ServicesDep, media_id: str, collection: str | None
) -> tuple[str, dict[str, Any]]:
    if not _UUID.match(media_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such media")
    name = collection or services.settings.default_collection
    physical = await services.catalog.resolve(name)  # the version searches read (catalog.py)
    if not await services.store.collection_exists(physical):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    found = await services.store.retrieve(physical, [media_id])
    if media_id not in found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such media")
    return name, found[media_id]


@router.get("/media/{media_id}")
async def media_record(
    media_id: str, services: ServicesDep, collection: str | None = Query(None, pattern=_COLLECTION)
) -> dict[str, Any]:
    name, payload = await _payload(services, media_id, collection)
    return {"id": media_id, "collection": name, **payload}


@router.get("/media/{media_id}/timeline")
async def media_timeline(
    media_id: str, services: ServicesDep, collection: str | None = Query(None, pattern=_COLLECTION)
) -> dict[str, Any]:
    """Who is on screen (`seen`) and who speaks (`heard`) in the whole file this chunk belongs to, as time
    ranges per person (people_view.timeline)."""
    name, payload = await _payload(services, media_id, collection)
    content_hash = str(payload.get("content_hash"))
    physical = await services.catalog.resolve(name)
    found = await timeline(services.store, physical, content_hash)
    return {"media_id": media_id, "content_hash": content_hash, **found}


# A signed URL's expiry and signature (api/signing.py); checked with the API key, before the route runs.
_EXP = Query(None, pattern=r"^[0-9]{1,12}$", description="signed URL: expiry (epoch seconds)")
_SIG = Query(None, pattern=r"^[0-9a-f]{64}$", description="signed URL: signature")


@router.get("/media/{media_id}/thumbnail")
async def media_thumbnail(
    media_id: str,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
    exp: str | None = _EXP,
    sig: str | None = _SIG,
) -> OpenedFileResponse:
    """The stored thumbnail. Its name comes from the payload, so it is used only when it is a content hash
    (and a video chunk's index a non-negative integer), and served only from under the thumbnails folder."""
    _, payload = await _payload(services, media_id, collection)
    thumbs, content_hash = services.settings.thumbnails_dir, payload.get("content_hash")
    if not is_content_hash(content_hash):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no thumbnail for this media")
    path = thumbnail_path(thumbs, content_hash)
    if payload.get("media_type") == "video":  # each chunk has its own (its middle keyframe)
        index = payload.get("chunk_index") or 0
        if type(index) is not int or index < 0:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no thumbnail for this media")
        plan = payload.get("chunk_plan")
        if plan is not None and not (isinstance(plan, str) and _PLAN.fullmatch(plan)):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no thumbnail for this media")
        path = chunk_thumbnail_path(thumbs, content_hash, index, plan)
    opened = await asyncio.to_thread(_open_thumbnail, thumbs, path)
    if opened is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no thumbnail for this media")
    return OpenedFileResponse(opened, "image/jpeg", headers={"cache-control": "public, max-age=86400"})


def _open_thumbnail(thumbs: Path, path: Path) -> OpenedFile | None:
    return open_first_within([str(path)], [thumbs.resolve()])


@router.get("/media/{media_id}/stream")
async def media_stream(
    media_id: str,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
    exp: str | None = _EXP,
    sig: str | None = _SIG,
) -> OpenedFileResponse:
    """The original file; Starlette's FileResponse answers Range requests (a player can seek). Only a
    regular file, reached without a symlink as its last component, whose opened descriptor lies under
    ALLOWED_ROOTS is served (security.open_within); otherwise 404."""
    _, payload = await _payload(services, media_id, collection)
    roots = services.settings.allowed_root_paths
    opened = await asyncio.to_thread(open_first_within, payload.get("paths") or [], roots)
    if opened is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the original file is no longer available")
    return OpenedFileResponse(opened, str(payload.get("mime") or "application/octet-stream"))
