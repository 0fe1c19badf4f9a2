"""Routes for what a search hit points to: its record, its thumbnail, the original file (HTTP Range)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from orchestrator.api.access import PrincipalDep, check_read
from orchestrator.api.deps import ServicesDep
from orchestrator.api.files import OpenedFileResponse
from orchestrator.api.object_files import ObjectResponse
from orchestrator.media.thumbnails import chunk_thumbnail_path, thumbnail_path
from orchestrator.people_view import timeline
from orchestrator.security import OpenedFile, is_content_hash, open_first_within
from orchestrator.services import Services
from orchestrator.sources.roots import is_s3_uri, split_s3_path
from orchestrator.sources.s3 import ObjectError, ObjectStoreError, RangeNotSatisfiableError
from orchestrator.tenancy import Principal

router = APIRouter(tags=["media"])

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_COLLECTION = r"^[A-Za-z0-9_-]{1,64}$"
_PLAN = re.compile(r"[0-9a-f]{16}")  # a chunk plan's digest (manifest.plan_digest), part of a file name


async def _payload(
    services: ServicesDep, media_id: str, collection: str | None, who: Principal
) -> tuple[str, dict[str, Any]]:
    if not _UUID.match(media_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such media")
    name = collection or services.settings.default_collection
    await check_read(who, services, name)  # another tenant's collection: as if it did not exist
    physical = await services.catalog.resolve(name)  # the version searches read (catalog.py)
    if not await services.store.collection_exists(physical):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    found = await services.store.retrieve(physical, [media_id])
    if media_id not in found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such media")
    return name, found[media_id]


@router.get("/media/{media_id}")
async def media_record(
    who: PrincipalDep,
    media_id: str,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
) -> dict[str, Any]:
    name, payload = await _payload(services, media_id, collection, who)
    return {"id": media_id, "collection": name, **payload}


@router.get("/media/{media_id}/timeline")
async def media_timeline(
    who: PrincipalDep,
    media_id: str,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
) -> dict[str, Any]:
    """Who is on screen (`seen`) and who speaks (`heard`) in the whole file this chunk belongs to, as time
    ranges per person (people_view.timeline)."""
    name, payload = await _payload(services, media_id, collection, who)
    content_hash = str(payload.get("content_hash"))
    physical = await services.catalog.resolve(name)
    found = await timeline(services.store, physical, content_hash)
    return {"media_id": media_id, "content_hash": content_hash, **found}


# A signed URL's expiry and signature (api/signing.py); checked with the API key, before the route runs.
_EXP = Query(None, pattern=r"^[0-9]{1,12}$", description="signed URL: expiry (epoch seconds)")
_SIG = Query(None, pattern=r"^[0-9a-f]{64}$", description="signed URL: signature")


@router.get("/media/{media_id}/thumbnail")
async def media_thumbnail(
    who: PrincipalDep,
    media_id: str,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
    exp: str | None = _EXP,
    sig: str | None = _SIG,
) -> OpenedFileResponse:
    """The stored thumbnail. Its name comes from the payload, so it is used only when it is a content hash
    (and a video chunk's index a non-negative integer), and served only from under the thumbnails folder."""
    _, payload = await _payload(services, media_id, collection, who)
    thumbs, content_hash = services.settings.thumbnails_dir, payload.get("content_hash")
    if not is_content_hash(content_hash):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no thumbnail for this media")
    path = thumbnail_path(thumbs, content_hash)
    if payload.get("media_type") in ("video", "document"):  # each chunk has its own (keyframe, page)
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
    who: PrincipalDep,
    media_id: str,
    request: Request,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
    exp: str | None = _EXP,
    sig: str | None = _SIG,
) -> Response:
    """The original file; Starlette's FileResponse answers Range requests (a player can seek). Only a
    regular file, reached without a symlink as its last component, whose opened descriptor lies under
    ALLOWED_ROOTS or UPLOAD_DIR is served (security.open_within); otherwise 404. An object of an object
    store (an s3:// path, its bucket in S3_ALLOWED_BUCKETS) is streamed from the store, a Range passed on."""
    _, payload = await _payload(services, media_id, collection, who)
    paths = [p for p in payload.get("paths") or [] if isinstance(p, str)]
    mime = str(payload.get("mime") or "application/octet-stream")
    roots = services.settings.ingest_root_paths  # ALLOWED_ROOTS and UPLOAD_DIR
    local = [p for p in paths if not is_s3_uri(p)]
    opened = await asyncio.to_thread(open_first_within, local, roots) if local else None
    if opened is not None:
        return OpenedFileResponse(opened, mime)
    return await _stream_object(services, paths, request.headers.get("range"), mime)


async def _stream_object(services: Services, paths: list[str], byte_range: str | None, mime: str) -> Response:
    """The first of the s3:// paths the store serves; 404 when none exists, 502 when the store failed."""
    failure = None
    for path in paths:
        where = split_s3_path(path)
        if where is None or where[0] not in services.settings.s3_allowed_bucket_set:
            continue
        try:
            stream = await asyncio.to_thread(services.objects.open_object, *where, byte_range)
        except RangeNotSatisfiableError as exc:
            headers = {"content-range": f"bytes */{exc.size}"} if exc.size is not None else None
            raise HTTPException(status.HTTP_416_RANGE_NOT_SATISFIABLE, str(exc), headers) from exc
        except ObjectStoreError as exc:
            failure = str(exc)
            continue
        except ObjectError:
            continue
        return ObjectResponse(stream, mime)
    if failure is not None:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, failure)
    raise HTTPException(status.HTTP_404_NOT_FOUND, "the original file is no longer available")
