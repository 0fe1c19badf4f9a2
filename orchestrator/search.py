"""Search: the query's text vector, its image–text vector (when the collection has image vectors) and its
keyword vector (BM25, keywords.py), fused by the engine (RRF) in one Query API call, with filters;
spoken phrases re-ranked and placed in time; hits grouped by file on request; a relevance floor that
says when nothing matches well (relevance.py); snippets with the matched words marked (snippets.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from orchestrator.catalog import Catalog
from orchestrator.clients.ml import MLClient, MLRequestError
from orchestrator.clients.vectors import ScoredPoint, SearchFilter, SearchRequest, VectorStore
from orchestrator.config import Settings
from orchestrator.file_index import FileIndex
from orchestrator.keywords import ANALYZER, LEGACY_ANALYZER, keyword_query, query_words
from orchestrator.relevance import Floors, evidence, keyword_share, relevant, text_floor
from orchestrator.snippets import locate, make_snippet

# Interactive: a search waits at most this long for the ML service (retries and requests together: a
# replica restarting or slow), then answers 503; each embedding request gets SEARCH_ML_TIMEOUT_S (a live
# replica embeds a query in tens of ms, a model loading on first use in about a second) before the
# search tries another replica or tries again, so one slow replica cannot hold it.
SEARCH_ML_DEADLINE_S = 5.0
SEARCH_ML_TIMEOUT_S = 2.0
# Fused hits looked at again (rerank): by the share of the query's words they hold, then by a phrase spoken.
RERANK_DEPTH = 20
PHRASE_COVERAGE = 0.5  # tiny.en garbles ~1 word in 5 of these voices; half the words still place a sentence
KEYWORD_COVERAGE = 0.5  # a hit holding at least this share of the query's words is reranked by it
# How deep one search reads the fused list: offset + limit (+1, to know whether there is more), for
# grouped results GROUP_DEPTH times that (a file's moments fold under its best), at most MAX_DEPTH.
GROUP_DEPTH = 5
MAX_DEPTH = 1000
# The fused hits whose evidence decides the relevance floor (no_good_match).
FLOOR_DEPTH = 10


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    collection: str
    limit: int = 10
    offset: int = 0  # hits (or files, grouped) skipped: the previous page's next_offset
    group_by: Literal["media"] | None = None
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"  # which branches run (dense: text + image)
    media_type: str | None = None
    path_prefix: str | None = None
    taken_after: float | None = None  # epoch seconds (EXIF / container date)
    taken_before: float | None = None
    ingested_after: float | None = None  # epoch seconds (when the chunk was indexed)
    ingested_before: float | None = None
    # Person ids (identities.py; the API resolves names): chunks where any of them is seen or heard, and
    # chunks where any of them speaks (where the query's words are spoken: speaks those words).
    person: tuple[str, ...] = ()
    speaker: tuple[str, ...] = ()
    cluster: str | None = None  # one face or voice cluster's chunks (search by example)
    has_text: bool | None = None  # words read on screen or spoken (OCR, transcript)
    min_duration_s: float | None = None  # of the whole file (video and audio)
    max_duration_s: float | None = None
    language: str | None = None  # the chunk's spoken language (ASR's code: "en", "es")
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SearchTarget:
    """Where a collection's search goes: its current version's store collection, the versions of the
    models its vectors were made with (a query is embedded by the same ones; None: whatever serves), and
    the keyword analysis of its sparse vectors."""

    physical: str
    text_version: str | None = None
    image_text_version: str | None = None
    version: int | None = None  # the collection version (None: a collection not versioned yet)
    analyzer: str = ANALYZER
    text_model: str | None = None  # the text model's name (relevance floors are per model)


async def resolve_target(catalog: Catalog, collection: str) -> SearchTarget:
    """The collection's current version (catalog.py); its own name when it has no versions yet."""
    current = await catalog.current(collection)
    if current is None:  # never ingested (nothing to find) or from before versions (legacy keywords)
        return SearchTarget(collection, analyzer=LEGACY_ANALYZER)
    models = {} if current.manifest.unknown else current.manifest.models
    text, image_text = _version(models.get("text")), _version(models.get("image_text"))
    text_model = models.get("text")
    return SearchTarget(
        current.physical,
        text,
        image_text,
        current.version,
        current.manifest.keywords,
        text_model.rsplit("@", 1)[0] if text_model else None,
    )


def search_floors(settings: Settings, target: SearchTarget) -> Floors:
    """The relevance floors for a search of ``target`` (the text floor is its text model's)."""
    return Floors(
        text_floor(target.text_model, settings.search_text_floor),
        settings.search_image_floor,
        settings.search_keyword_floor,
    )


def _version(model: str | None) -> str | None:
    """The version of a manifest's "name@version"."""
    return model.rsplit("@", 1)[1] if model and "@" in model else None


@dataclass(frozen=True, slots=True)
class Moment:
    """Another matching moment of a hit's file (group_by=media)."""

    id: str
    score: float
    start_s: float | None
    end_s: float | None
    snippet_html: str
    thumbnail_url: str


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
    stream_url: str = ""
    snippet_html: str = ""  # the snippet HTML-escaped, matched words in <mark>
    snippet_source: str = ""  # transcript / ocr / caption / tags / text / filename
    highlights: list[tuple[int, int]] = field(default_factory=list)  # offsets in `snippet`
    chunk_start_s: float | None = None
    chunk_end_s: float | None = None
    transcript: str = ""
    people: list[str] = field(default_factory=list)  # person ids seen or heard (identities.py)
    names: list[str] = field(default_factory=list)  # their names, where users gave one
    person_names: dict[str, str] = field(default_factory=dict)  # person id -> name, for the named ones
    tags: list[str] = field(default_factory=list)
    ocr_text: str = ""
    caption: str = ""
    taken_at: str | None = None
    language: str | None = None  # the spoken language detected in the chunk (ISO 639-1: "es", "en")
    page: int | None = None  # documents: the passage's page (1-based; PDF), its thumbnail is that page
    heading: str | None = None  # documents: the heading the passage stands under
    relevance: dict[str, float | None] = field(default_factory=dict)  # evidence (relevance.py)
    moments: list[Moment] = field(default_factory=list)  # the file's other moments (group_by=media)


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    no_good_match: bool  # nothing found clears the relevance floor (relevance.py)
    next_offset: int | None  # the next page's offset; None: this is the last page


async def search(
    store: VectorStore,
    ml: MLClient,
    index: FileIndex,
    query: SearchQuery,
    target: SearchTarget | None = None,
    floors: Floors | None = None,
) -> SearchResult:
    """One page of hits with every path of their content (from the file index: a point lists only a
    sample). `target`: the collection's current version (resolve_target); None: the collection's own name
    with today's analysis. `floors`: the relevance floor (None: relevance.Floors' defaults)."""
    target = target or SearchTarget(query.collection)
    physical = target.physical
    if not await store.collection_exists(physical):
        return SearchResult([], True, None)
    # An image–text model (CLIP) made the points: the query is embedded in its space too, at the same time.
    spaces = ["text", "image_text"] if "image" in await store.dense_vectors(physical) else ["text"]
    versions = {"text": target.text_version, "image_text": target.image_text_version}
    embedded = await asyncio.gather(*(_embed(ml, query, space, versions[space]) for space in spaces))
    if embedded[0] is None:
        raise MLRequestError("the ML service could not embed the query")
    dense = {name: vector for name, vector in zip(("text", "image"), embedded, strict=False) if vector}
    wanted = query.offset + query.limit + 1  # one more than the page: is there a next one?
    depth = min(MAX_DEPTH, max(RERANK_DEPTH, wanted * (GROUP_DEPTH if query.group_by else 1)))
    keywords = keyword_query(query.text, target.analyzer)
    dense_branches = dense if query.mode != "keyword" else {}
    sparse_branches = {"sparse": keywords} if keywords.indices and query.mode != "dense" else {}
    if not dense_branches and not sparse_branches:  # keyword mode, and no keyword in the query
        return SearchResult([], True, None)
    request = SearchRequest(
        dense=dense_branches,
        sparse=sparse_branches,
        limit=depth,
        filter=search_filter(query),
        prefetch_limit=max(50, depth),
        with_vectors=tuple(dense),
    )
    found = await store.search(physical, request)
    if query.speaker:  # who speaks the matched words, not only who speaks somewhere in the chunk
        found = [p for p in found if speaks_there(p.payload, query.text, query.speaker)]
    # Each hit's share of the query's words, once: the rerank and the floor both read it (the floor's
    # FLOOR_DEPTH hits lie within the rerank's RERANK_DEPTH, which only reorders them).
    shares = {p.id: keyword_share(p, query.text) for p in found[:RERANK_DEPTH]}
    points = found if query.mode == "dense" else rerank(found, query.text, shares)  # dense: plain baseline
    floor = floors or Floors()
    proofs = {p.id: evidence(p, dense, query.text, shares.get(p.id)) for p in points[:FLOOR_DEPTH]}
    no_good_match = not any(relevant(e, floor) for e in proofs.values())
    groups = _group(points) if query.group_by == "media" else [[p] for p in points]
    page = groups[query.offset : query.offset + query.limit]
    more = len(groups) > query.offset + query.limit
    hashes = [str(g[0].payload["content_hash"]) for g in page if g[0].payload.get("content_hash")]
    all_paths = await index.paths_of(physical, hashes)
    hits = [
        make_hit(group, all_paths.get(str(group[0].payload.get("content_hash"))), query, proofs, dense)
        for group in page
    ]
    return SearchResult(hits, no_good_match, query.offset + query.limit if more else None)


def _group(points: list[ScoredPoint]) -> list[list[ScoredPoint]]:
    """The hits of each file (content), files in the order of their best hit, each file's hits in order."""
    groups: dict[str, list[ScoredPoint]] = {}
    for p in points:
        groups.setdefault(str(p.payload.get("content_hash") or p.id), []).append(p)
    return list(groups.values())


async def _embed(ml: MLClient, query: SearchQuery, space: str, version: str | None) -> list[float] | None:
    """The query's vector by the model (and version) that made the collection's vectors of this space."""
    vectors = await ml.embed_text(
        [query.text],
        space=space,
        version=version,
        query=True,
        request_id=query.request_id,
        deadline_s=SEARCH_ML_DEADLINE_S,
        timeout_s=SEARCH_ML_TIMEOUT_S,
    )
    return vectors[0]


def search_filter(query: SearchQuery) -> SearchFilter | None:
    match: dict[str, Any] = {}
    ranges: dict[str, tuple[float | None, float | None]] = {}
    if query.media_type:
        match["media_type"] = query.media_type
    if query.path_prefix:
        match["dirs"] = query.path_prefix.rstrip("/") or "/"
    if query.person:
        match["people"] = list(query.person)
    if query.speaker:
        match["speaking"] = list(query.speaker)
    if query.cluster:
        match["clusters"] = query.cluster
    if query.language:
        match["language"] = query.language
    for name, low, high in (
        ("taken_at_ts", query.taken_after, query.taken_before),
        ("indexed_at", query.ingested_after, query.ingested_before),
        ("duration_s", query.min_duration_s, query.max_duration_s),
    ):
        if low is not None or high is not None:
            ranges[name] = (low, high)
    if query.has_text is not None:
        ranges["text_chars"] = (1.0, None) if query.has_text else (None, 0.0)
    return SearchFilter(match=match, ranges=ranges) if match or ranges else None


def speaks_there(payload: dict[str, Any], text: str, speakers: tuple[str, ...]) -> bool:
    """Whether one of `speakers` speaks where the query's words are spoken in this chunk (a turn of theirs
    overlaps the words' span); a chunk where the words are not spoken passes (its filter said they speak)."""
    match = locate(payload.get("words") or [], text)
    if match is None:
        return True
    for turn in payload.get("speakers") or []:
        a, b = turn.get("start_s"), turn.get("end_s")
        if turn.get("person") in speakers and a is not None and b is not None:
            if float(a) < match.end_s and float(b) > match.start_s:
                return True
    return False


def media_urls(point_id: str, collection: str) -> tuple[str, str]:
    """A hit's thumbnail and original-file URLs (the API signs them when a key is set)."""
    base = f"/media/{point_id}"
    return f"{base}/thumbnail?collection={quote(collection)}", f"{base}/stream?collection={quote(collection)}"


def make_hit(
    group: list[ScoredPoint],
    paths: list[str] | None,
    query: SearchQuery,
    proofs: dict[str, Any],
    dense: dict[str, list[float]],
) -> Hit:
    best, payload = group[0], group[0].payload
    paths = paths or list(payload.get("paths") or [])
    shown = make_snippet(payload, query.text)
    start_s, end_s = payload.get("start_s"), payload.get("end_s")
    if shown.start_s is not None:  # the matched words are spoken: the hit is where
        start_s, end_s = shown.start_s, shown.end_s
    proof = proofs.get(best.id) or evidence(best, dense, query.text)
    thumbnail, stream = media_urls(best.id, query.collection)
    moments = []
    for other in group[1:]:
        seen = make_snippet(other.payload, query.text)
        moments.append(
            Moment(
                id=other.id,
                score=other.score,
                start_s=seen.start_s if seen.start_s is not None else other.payload.get("start_s"),
                end_s=seen.end_s if seen.start_s is not None else other.payload.get("end_s"),
                snippet_html=seen.html,
                thumbnail_url=media_urls(other.id, query.collection)[0],
            )
        )
    return Hit(
        id=best.id,
        score=best.score,
        path=paths[0] if paths else payload.get("path"),
        paths=paths,
        media_type=payload.get("media_type"),
        start_s=start_s,
        end_s=end_s,
        snippet=shown.text,
        snippet_html=shown.html,
        snippet_source=shown.source,
        highlights=shown.highlights,
        thumbnail_url=thumbnail,
        stream_url=stream,
        chunk_start_s=payload.get("start_s"),
        chunk_end_s=payload.get("end_s"),
        transcript=str(payload.get("transcript") or ""),
        people=list(payload.get("people") or []),
        names=list(payload.get("names") or []),
        person_names={
            str(e["person"]): str(e["name"])
            for e in [*(payload.get("faces") or []), *(payload.get("speakers") or [])]
            if e.get("person") and e.get("name")
        },
        tags=list(payload.get("tags") or []),
        ocr_text=str(payload.get("ocr_text") or ""),
        caption=str(payload.get("caption") or ""),
        taken_at=payload.get("taken_at"),
        language=payload.get("language"),
        page=payload.get("page"),
        heading=payload.get("heading") or None,
        relevance=proof.to_json(),
        moments=moments,
    )


def rerank(
    points: list[ScoredPoint], query: str, shares: dict[str, float] | None = None
) -> list[ScoredPoint]:
    """Among the first RERANK_DEPTH fused hits: those holding more of the query's words come first (at
    least KEYWORD_COVERAGE of them; "invoice 2024-0173" puts the one invoice with that number above the
    fifteen that only share "invoice 2024", which rank fusion alone lets the dense branch's near-ties
    outvote); among equals, a sentence spoken almost word for word (at least PHRASE_COVERAGE
    of its 3+ words in one window of the transcript, best coverage first); else the fused
    order. Below RERANK_DEPTH the fused order is kept, so pages agree whatever depth a search read.
    `shares`: the hits' keyword shares by id, when already computed."""
    if not query_words(query):
        return points

    def key(item: tuple[int, ScoredPoint]) -> tuple[float, float, int]:
        rank, point = item
        share = shares[point.id] if shares and point.id in shares else keyword_share(point, query)
        return (-round(share, 2) if share >= KEYWORD_COVERAGE else 0.0, _spoken_key(point, query), rank)

    head = [p for _, p in sorted(enumerate(points[:RERANK_DEPTH]), key=key)]
    return head + points[RERANK_DEPTH:]


def _spoken_key(point: ScoredPoint, query: str) -> float:
    if len(set(query_words(query))) < 3:
        return 0.0
    match = locate(point.payload.get("words") or [], query)
    coverage = match.coverage if match is not None else 0.0
    return -round(coverage, 2) if coverage >= PHRASE_COVERAGE else 0.0
