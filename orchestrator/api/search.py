"""Routes for search: GET with query parameters, POST with a JSON body (words, or an example: a media id
or an image in base64), POST /search/image with a multipart upload. An unknown parameter or field
(`type=audio` for `media_type=audio`) is a 422, never a silently unfiltered search."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile, status
from pydantic import ValidationError

from orchestrator.api.access import check_read, principal
from orchestrator.api.deps import ServicesDep
from orchestrator.api.schemas import SearchBody, SearchFilters
from orchestrator.api.signing import sign_url
from orchestrator.clients.ml import MLRequestError, MLUnavailableError
from orchestrator.example_search import ExampleError, ExampleResult, search_by_image, search_by_media
from orchestrator.media.images import MediaDecodeError
from orchestrator.search import SearchQuery, SearchResult, SearchTarget, resolve_target, search, search_floors
from orchestrator.services import Services

router = APIRouter(tags=["search"])  # every route reads its collection through `_query`


async def _query(services: Services, text: str, filters: SearchFilters, request: Request) -> SearchQuery:
    fields = filters.model_dump(exclude={"query", "media_id", "image_base64"})
    collection = fields["collection"] = filters.collection or services.settings.default_collection
    await check_read(principal(request), services, collection)  # another tenant's: as if it did not exist
    wanted = {name: fields.pop(name) for name in ("person", "speaker")}
    if any(v is not None for v in wanted.values()):  # names or ids -> person ids (unknown: matches nothing)
        ids = await services.people.identities(await services.catalog.resolve(collection))
        for name, value in wanted.items():
            if value is not None:
                fields[name] = tuple(ids.resolve(value)) or (value,)
    return SearchQuery(text=text, request_id=request.headers.get("x-request-id"), **fields)


def _answer(
    services: Services, query: SearchQuery, target: SearchTarget, result: SearchResult
) -> dict[str, Any]:
    settings = services.settings

    def signed(url: str) -> str:
        return sign_url(url, settings.signing_key, settings.media_url_ttl_s)

    hits = []
    for hit in result.hits:
        body = dataclasses.asdict(hit)
        body["thumbnail_url"], body["stream_url"] = signed(hit.thumbnail_url), signed(hit.stream_url)
        for moment in body["moments"]:
            moment["thumbnail_url"] = signed(moment["thumbnail_url"])
        hits.append(body)
    return {
        "query": query.text,
        "collection": query.collection,
        # Which version of the collection answered, and the model versions the query was embedded with
        # (those its vectors were made with: never another model's space).
        "version": target.version,
        "query_models": {"text": target.text_version, "image_text": target.image_text_version},
        "no_good_match": result.no_good_match,
        "offset": query.offset,
        "next_offset": result.next_offset,
        "group_by": query.group_by,
        "hits": hits,
    }


async def _words(services: Services, query: SearchQuery) -> dict[str, Any]:
    settings = services.settings
    try:
        target = await resolve_target(services.catalog, query.collection)
        floors = search_floors(settings, target)
        result = await search(services.store, services.ml, services.index, query, target, floors)
    except MLUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    except MLRequestError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    except ValueError as exc:  # filters that cannot hold together
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _answer(services, query, target, result)


async def _example(
    services: Services, query: SearchQuery, media_id: str | None, image: bytes | None
) -> dict[str, Any]:
    settings = services.settings
    try:
        target = await resolve_target(services.catalog, query.collection)
        found: ExampleResult
        if media_id is not None:
            found = await search_by_media(services.store, services.index, query, target, media_id.lower())
        elif image is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "give media_id or an image")
        else:
            found = await search_by_image(
                services.store,
                services.ml,
                services.index,
                query,
                target,
                image,
                face_threshold=settings.face_cluster_threshold,
                max_pixels=settings.max_image_pixels,
                ml_max_side=settings.ml_image_max_side,
            )
    except MediaDecodeError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the example: {exc}") from exc
    except ExampleError as exc:
        code = (
            status.HTTP_404_NOT_FOUND
            if "no such media" in str(exc)
            else status.HTTP_422_UNPROCESSABLE_CONTENT
        )
        raise HTTPException(code, str(exc)) from exc
    except MLUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    except MLRequestError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    answer = _answer(services, query, target, found.result)
    answer["example"] = {"by": found.by, "person": found.person, "description": found.description}
    return answer


def _get_filters(
    collection: str | None = Query(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    limit: int = Query(10, ge=1, le=200),
    offset: int = Query(0, ge=0, le=800),
    group_by: str | None = Query(default=None, pattern="^media$"),
    mode: str | None = Query(default=None, pattern="^(hybrid|dense|keyword)$"),
    media_type: str | None = Query(default=None, pattern="^(image|video|audio|document)$"),
    path_prefix: str | None = Query(default=None, max_length=4096),
    taken_after: float | None = None,
    taken_before: float | None = None,
    ingested_after: float | None = None,
    ingested_before: float | None = None,
    person: str | None = Query(default=None, max_length=64),
    speaker: str | None = Query(default=None, max_length=64),
    has_text: bool | None = None,
    min_duration_s: float | None = Query(default=None, ge=0),
    max_duration_s: float | None = Query(default=None, ge=0),
    language: str | None = Query(default=None, max_length=3),
) -> SearchFilters:
    values = {k: v for k, v in locals().items() if v is not None}
    try:
        return SearchFilters.model_validate(values)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors(include_url=False)) from exc


@router.get("/search")
async def search_get(
    request: Request,
    services: ServicesDep,
    filters: Annotated[SearchFilters, Depends(_get_filters)],
    q: str = Query(min_length=1, max_length=2000),
) -> dict[str, Any]:
    return await _words(services, await _query(services, q, filters, request))


@router.post("/search")
async def search_post(body: SearchBody, request: Request, services: ServicesDep) -> dict[str, Any]:
    query = await _query(services, body.query or "", body, request)
    if body.query is not None:
        return await _words(services, query)
    image = None
    if body.image_base64 is not None:
        data = (
            body.image_base64.split(",", 1)[1] if body.image_base64.startswith("data:") else body.image_base64
        )
        try:
            image = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "image_base64 is not base64") from exc
    return await _example(services, query, body.media_id, image)


@router.post("/search/image")
async def search_image(
    request: Request,
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="an image: its faces, look or content are searched for")],
    collection: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
    limit: Annotated[int, Form(ge=1, le=200)] = 10,
    media_type: Annotated[str | None, Form(pattern="^(image|video|audio|document)$")] = None,
) -> dict[str, Any]:
    """The multipart form of search by example (`curl -F image=@photo.jpg`); the body is capped by
    MAX_REQUEST_BYTES like every request."""
    filters = SearchFilters.model_validate(
        {k: v for k, v in {"collection": collection, "limit": limit, "media_type": media_type}.items() if v}
    )
    data = await image.read()
    return await _example(services, await _query(services, "", filters, request), None, data)
