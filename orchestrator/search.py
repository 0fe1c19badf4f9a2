"""Semantic search: the query's text vector, its image–text vector (when the collection has image vectors)
and its keyword vector, fused by the engine (RRF), with filters; spoken phrases re-ranked, placed in time."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from orchestrator.catalog import Catalog
from orchestrator.clients.ml import MLClient, MLRequestError
from orchestrator.clients.vectors import ScoredPoint, SearchFilter, SearchRequest, VectorStore
from orchestrator.file_index import FileIndex
from orchestrator.keywords import sparse_vector, tokenize

# Interactive: a search waits at most this long for the ML service (retries and requests together: a
# replica restarting or slow), then answers 503; each embedding request gets SEARCH_ML_TIMEOUT_S (a live
# replica embeds a query in tens of ms, a model loading on first use in about a second) before the
# search tries another replica or tries again, so one slow replica cannot hold it.
SEARCH_ML_DEADLINE_S = 5.0
SEARCH_ML_TIMEOUT_S = 2.0
_SNIPPET_CHARS = 160
# Fused hits looked at again for spoken phrases (rerank_spoken), and how much of a phrase must be spoken.
RERANK_DEPTH = 20
PHRASE_COVERAGE = 0.5  # tiny.en garbles ~1 word in 5 of these voices; half the words still place a sentence


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    collection: str
    limit: int = 10
    media_type: str | None = None
    path_prefix: str | None = None
    taken_after: float | None = None
    taken_before: float | None = None
    person: str | None = None  # a face or voice cluster id ("person-…", "voice-…")
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SearchTarget:
    """Where a collection's search goes: its current version's store collection, and the versions of the
    models its vectors were made with (a query is embedded by the same ones; None: whatever serves)."""

    physical: str
    text_version: str | None = None
    image_text_version: str | None = None
    version: int | None = None  # the collection version (None: a collection not versioned yet)


async def resolve_target(catalog: Catalog, collection: str) -> SearchTarget:
    """The collection's current version (catalog.py); its own name when it has no versions yet."""
    current = await catalog.current(collection)
    if current is None:
        return SearchTarget(collection)
    models = {} if current.manifest.unknown else current.manifest.models
    text, image_text = _version(models.get("text")), _version(models.get("image_text"))
    return SearchTarget(current.physical, text, image_text, current.version)


def _version(model: str | None) -> str | None:
    """The version of a manifest's "name@version"."""
    return model.rsplit("@", 1)[1] if model and "@" in model else None


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    path: str | None
    paths: list[str]
    media_type: str | None
    start_s: float | None  # where the matched words are spoken (else where the chunk starts)
    end_s: float | None
    snippet: str
    thumbnail_url: str
    chunk_start_s: float | None = None
    chunk_end_s: float | None = None
    transcript: str = ""
    people: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    ocr_text: str = ""
    taken_at: str | None = None


async def search(
    store: VectorStore,
    ml: MLClient,
    index: FileIndex,
    query: SearchQuery,
    target: SearchTarget | None = None,
) -> list[Hit]:
    """Hits with every path of their content (from the file index: a point lists only a sample).
    `target`: the collection's current version (resolve_target); None: the collection's own name."""
    target = target or SearchTarget(query.collection)
    physical = target.physical
    if not await store.collection_exists(physical):
        return []
    # An image–text model (CLIP) made the points: the query is embedded in its space too, at the same time.
    spaces = ["text", "image_text"] if "image" in await store.dense_vectors(physical) else ["text"]
    versions = {"text": target.text_version, "image_text": target.image_text_version}
    embedded = await asyncio.gather(*(_embed(ml, query, space, versions[space]) for space in spaces))
    if embedded[0] is None:
        raise MLRequestError("the ML service could not embed the query")
    dense = {name: vector for name, vector in zip(("text", "image"), embedded, strict=False) if vector}
    request = SearchRequest(
        dense=dense,
        sparse={"sparse": sparse_vector(query.text)} if tokenize(query.text) else {},
        limit=max(query.limit, RERANK_DEPTH),
        filter=_filter(query),
        prefetch_limit=max(50, query.limit * 5),
    )
    points = rerank_spoken(await store.search(physical, request), query.text)[: query.limit]
    hashes = [str(p.payload["content_hash"]) for p in points if p.payload.get("content_hash")]
    all_paths = await index.paths_of(physical, hashes)
    return [
        _hit(p.id, p.score, p.payload, all_paths.get(str(p.payload.get("content_hash"))), query)
        for p in points
    ]


async def _embed(ml: MLClient, query: SearchQuery, space: str, version: str | None) -> list[float] | None:
    """The query's vector by the model (and version) that made the collection's vectors of this space."""
    vectors = await ml.embed_text(
        [query.text],
        space=space,
        version=version,
        request_id=query.request_id,
        deadline_s=SEARCH_ML_DEADLINE_S,
        timeout_s=SEARCH_ML_TIMEOUT_S,
    )
    return vectors[0]


def _filter(query: SearchQuery) -> SearchFilter | None:
    match: dict[str, Any] = {}
    ranges: dict[str, tuple[float | None, float | None]] = {}
    if query.media_type:
        match["media_type"] = query.media_type
    if query.path_prefix:
        match["dirs"] = query.path_prefix.rstrip("/") or "/"
    if query.person:
        match["people"] = query.person
    if query.taken_after is not None or query.taken_before is not None:
        ranges["taken_at_ts"] = (query.taken_after, query.taken_before)
    return SearchFilter(match=match, ranges=ranges) if match or ranges else None


def _hit(
    point_id: str, score: float, payload: dict[str, Any], paths: list[str] | None, query: SearchQuery
) -> Hit:
    paths = paths or list(payload.get("paths") or [])
    start_s, end_s = payload.get("start_s"), payload.get("end_s")
    text = snippet(str(payload.get("text") or ""), query.text)
    spoken = locate(payload.get("words") or [], query.text)
    if spoken is not None:
        start_s, end_s, text = spoken.start_s, spoken.end_s, spoken.snippet
    return Hit(
        id=point_id,
        score=score,
        path=paths[0] if paths else payload.get("path"),
        paths=paths,
        media_type=payload.get("media_type"),
        start_s=start_s,
        end_s=end_s,
        snippet=text,
        thumbnail_url=f"/media/{point_id}/thumbnail?collection={quote(query.collection)}",
        chunk_start_s=payload.get("start_s"),
        chunk_end_s=payload.get("end_s"),
        transcript=str(payload.get("transcript") or ""),
        people=list(payload.get("people") or []),
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


# Words that say nothing about where a phrase is spoken.
_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his in is it its of on or our she so that the "
    "their them they this to was we were what when where which who will with you your".split()
)
_CONTEXT_WORDS = (8, 12)  # words of transcript shown before / after the match
# Whisper writes most numbers as digits ("17 seagulls"); people type them as words, or the other way round.
_NUMBERS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
} | {w: str(10 * n) for n, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)}


def _number(token: str) -> str:
    return _NUMBERS.get(token, token)


@dataclass(frozen=True, slots=True)
class SpokenMatch:
    matched: int  # distinct query words spoken in the window
    terms: int  # distinct query words (stopwords aside)
    start_s: float
    end_s: float
    snippet: str

    @property
    def coverage(self) -> float:
        return self.matched / self.terms


def locate(words: list[list[Any]], query: str) -> SpokenMatch | None:
    """Where in a chunk's words ([word, start_s, end_s]) the query is spoken: the window of about the
    query's length holding the most distinct query words (the earliest of equals), with a snippet of the
    transcript around it; None when no query word is spoken."""
    terms = {_number(t) for t in tokenize(query) if t not in _STOPWORDS} or set(tokenize(query))
    if not terms or not words:
        return None
    spoken = [_number(" ".join(tokenize(str(w[0])))) for w in words]
    span = len(tokenize(query)) + 3
    best: tuple[int, int, int] | None = None  # (matched terms, first, last)
    for i in range(len(words)):
        if spoken[i] not in terms:
            continue
        seen: set[str] = set()
        last = i
        for j in range(i, min(len(words), i + span)):
            if spoken[j] in terms:
                seen.add(spoken[j])
                last = j
        if best is None or len(seen) > best[0]:
            best = (len(seen), i, last)
    if best is None:
        return None
    matched, first, last = best
    # The phrase's first words may have been misheard: when the first match is the k-th word of the query,
    # the phrase began about k words earlier (not before the previous sentence's end).
    query_words = [_number(t) for t in tokenize(query)]
    k = query_words.index(spoken[first]) if spoken[first] in query_words else 0
    begin = first
    while begin > 0 and first - begin < k and not str(words[begin - 1][0]).rstrip().endswith((".", "?", "!")):
        begin -= 1
    lo, hi = max(0, begin - _CONTEXT_WORDS[0]), min(len(words), last + 1 + _CONTEXT_WORDS[1])
    text = " ".join(str(w[0]) for w in words[lo:hi])
    text = ("…" if lo > 0 else "") + text + ("…" if hi < len(words) else "")
    return SpokenMatch(matched, len(terms), float(words[begin][1]), float(words[last][2]), text)


def rerank_spoken(points: list[ScoredPoint], query: str) -> list[ScoredPoint]:
    """A sentence spoken almost word for word outranks chunks that are only about the same thing: chunks
    whose transcript holds at least PHRASE_COVERAGE of a phrase's words (3+ of them) in one window come
    first, best coverage first; the fused order is kept otherwise."""
    if len({t for t in tokenize(query) if t not in _STOPWORDS}) < 3:
        return points

    def key(item: tuple[int, ScoredPoint]) -> tuple[float, int]:
        rank, point = item
        match = locate(point.payload.get("words") or [], query)
        coverage = match.coverage if match is not None else 0.0
        return (-round(coverage, 2) if coverage >= PHRASE_COVERAGE else 0.0, rank)

    return [p for _, p in sorted(enumerate(points), key=key)]
