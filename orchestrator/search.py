"""Semantic search: the query's text vector and keyword vector, fused by the engine (RRF), with filters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from orchestrator.clients.ml import MLClient
from orchestrator.clients.vectors import SearchFilter, SearchRequest, VectorStore
from orchestrator.file_index import FileIndex
from orchestrator.keywords import sparse_vector, tokenize

# Interactive: a search waits this long for an ML service that is restarting, then answers 503.
SEARCH_ML_DEADLINE_S = 5.0
_SNIPPET_CHARS = 160


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    collection: str
    limit: int = 10
    media_type: str | None = None
    path_prefix: str | None = None
    taken_after: float | None = None
    taken_before: float | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    path: str | None
    paths: list[str]
    media_type: str | None
    start_s: float | None
    end_s: float | None
    snippet: str
    thumbnail_url: str
    people: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    ocr_text: str = ""
    taken_at: str | None = None


async def search(store: VectorStore, ml: MLClient, index: FileIndex, query: SearchQuery) -> list[Hit]:
    """Hits with every path of their content (from the file index: a point lists only a sample)."""
    vectors = await ml.embed_text([query.text], request_id=query.request_id, deadline_s=SEARCH_ML_DEADLINE_S)
    request = SearchRequest(
        dense={"text": vectors[0]},
        sparse={"sparse": sparse_vector(query.text)} if tokenize(query.text) else {},
        limit=query.limit,
        filter=_filter(query),
        prefetch_limit=max(50, query.limit * 5),
    )
    if not await store.collection_exists(query.collection):
        return []
    points = await store.search(query.collection, request)
    hashes = [str(p.payload["content_hash"]) for p in points if p.payload.get("content_hash")]
    all_paths = await index.paths_of(query.collection, hashes)
    return [
        _hit(p.id, p.score, p.payload, all_paths.get(str(p.payload.get("content_hash"))), query)
        for p in points
    ]


def _filter(query: SearchQuery) -> SearchFilter | None:
    match: dict[str, Any] = {}
    ranges: dict[str, tuple[float | None, float | None]] = {}
    if query.media_type:
        match["media_type"] = query.media_type
    if query.path_prefix:
        match["dirs"] = query.path_prefix.rstrip("/") or "/"
    if query.taken_after is not None or query.taken_before is not None:
        ranges["taken_at_ts"] = (query.taken_after, query.taken_before)
    return SearchFilter(match=match, ranges=ranges) if match or ranges else None


def _hit(
    point_id: str, score: float, payload: dict[str, Any], paths: list[str] | None, query: SearchQuery
) -> Hit:
    paths = paths or list(payload.get("paths") or [])
    return Hit(
        id=point_id,
        score=score,
        path=paths[0] if paths else payload.get("path"),
        paths=paths,
        media_type=payload.get("media_type"),
        start_s=payload.get("start_s"),
        end_s=payload.get("end_s"),
        snippet=snippet(str(payload.get("text") or ""), query.text),
        thumbnail_url=f"/media/{point_id}/thumbnail?collection={quote(query.collection)}",
        tags=list(payload.get("tags") or []),
        ocr_text=str(payload.get("ocr_text") or ""),
        taken_at=payload.get("taken_at"),
    )


def snippet(text: str, query: str, width: int = _SNIPPET_CHARS) -> str:
    """The part of the chunk's text around the first query word it contains (else its beginning)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    positions = [
        m.start()
        for term in tokenize(query)
        if (m := re.search(rf"\b{re.escape(term)}", text, flags=re.IGNORECASE)) is not None
    ]
    if not positions:
        return text[:width].rstrip() + "…"
    start = max(0, min(positions) - width // 3)
    end = min(len(text), start + width)
    return ("…" if start > 0 else "") + text[start:end].strip() + ("…" if end < len(text) else "")
