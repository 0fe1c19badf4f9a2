"""Routes for search: GET with query parameters, POST with a JSON body; same answer. An unknown parameter
or field (`type=audio` for `media_type=audio`) is a 422, never a silently unfiltered search."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from orchestrator.api.deps import ServicesDep
from orchestrator.api.schemas import MediaType, SearchBody
from orchestrator.clients.ml import MLRequestError, MLUnavailableError
from orchestrator.search import SearchQuery, resolve_target, search

router = APIRouter(tags=["search"])


async def _run(services: ServicesDep, query: SearchQuery) -> dict[str, Any]:
    try:
        target = await resolve_target(services.catalog, query.collection)
        hits = await search(services.store, services.ml, services.index, query, target)
    except MLUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    except MLRequestError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    return {
        "query": query.text,
        "collection": query.collection,
        # Which version of the collection answered, and the model versions the query was embedded with
        # (those its vectors were made with: never another model's space).
        "version": target.version,
        "query_models": {"text": target.text_version, "image_text": target.image_text_version},
        "hits": [dataclasses.asdict(h) for h in hits],
    }


@router.get("/search")
async def search_get(
    request: Request,
    services: ServicesDep,
    q: str = Query(min_length=1, max_length=2000),
    collection: str | None = Query(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    limit: int = Query(10, ge=1, le=200),
    media_type: MediaType | None = None,
    path_prefix: str | None = Query(default=None, max_length=4096),
    taken_after: float | None = None,
    taken_before: float | None = None,
    person: str | None = Query(default=None, max_length=64),
) -> dict[str, Any]:
    query = SearchQuery(
        text=q,
        collection=collection or services.settings.default_collection,
        limit=limit,
        media_type=media_type,
        path_prefix=path_prefix,
        taken_after=taken_after,
        taken_before=taken_before,
        person=person,
        request_id=request.headers.get("x-request-id"),
    )
    return await _run(services, query)


@router.post("/search")
async def search_post(body: SearchBody, request: Request, services: ServicesDep) -> dict[str, Any]:
    query = SearchQuery(
        text=body.query,
        collection=body.collection or services.settings.default_collection,
        limit=body.limit,
        media_type=body.media_type,
        path_prefix=body.path_prefix,
        taken_after=body.taken_after,
        taken_before=body.taken_before,
        person=body.person,
        request_id=request.headers.get("x-request-id"),
    )
    return await _run(services, query)
