"""Search by example: an image (uploaded) or a stored moment (its media id) instead of words.

- An image with a face of someone the collection knows (the nearest stored face at or above the face
  clustering threshold): that person's appearances, best-looking first.
- Else, with image–text vectors in the collection (a CLIP model): the images and keyframes nearest to
  the example's image vector.
- Else: the moments whose text is nearest to what the ML service sees in the example (its caption,
  tags and text read, composed as a chunk's text is): similar by content.
A media id uses the stored moment's own image vector (else its text vector) and leaves itself out.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal

from orchestrator import answers
from orchestrator.clients.ml import ImageRequestItem, MLClient, MLRequestError
from orchestrator.clients.vectors import ScoredPoint, SearchFilter, SearchRequest, VectorStore
from orchestrator.file_index import FileIndex
from orchestrator.media.images import decode_image
from orchestrator.people import FACE_SUFFIX
from orchestrator.pipeline.unify import compose_text, image_parts
from orchestrator.search import SearchQuery, SearchResult, SearchTarget, make_hit, search, search_filter

By = Literal["face", "image", "description", "media"]


class ExampleError(ValueError):
    """The example cannot be searched with (no such media, nothing seen in the image): a 4xx."""


@dataclass(frozen=True, slots=True)
class ExampleResult:
    result: SearchResult
    by: By
    person: str | None = None  # the person found in the example (by == "face")
    description: str = ""  # what the ML service saw (by == "description")


async def search_by_image(
    store: VectorStore,
    ml: MLClient,
    index: FileIndex,
    query: SearchQuery,
    target: SearchTarget,
    image: bytes,
    face_threshold: float,
    max_pixels: int,
    ml_max_side: int,
) -> ExampleResult:
    """`image`: the uploaded file's bytes (MediaDecodeError when it is not a decodable image)."""
    decoded = await asyncio.to_thread(
        decode_image, image, ml_max_side=ml_max_side, thumb_side=64, max_pixels=max_pixels
    )
    results = await ml.analyze_images(
        [ImageRequestItem(id="example", jpeg=decoded.ml_jpeg)], request_id=query.request_id
    )
    result = results[0] if results else {}
    if result.get("error"):
        raise MLRequestError(f"the ML service could not analyse the example: {result['error']}")
    physical = target.physical
    if not await store.collection_exists(physical):
        return ExampleResult(SearchResult([], True, None), "image")
    visual = image_parts(result)
    faces = sorted(
        (f for f in visual.faces if f.get("embedding")), key=lambda f: -(answers.number(f.get("score")) or 0)
    )
    for face in faces:
        person = await _known_person(store, physical, face["embedding"], face_threshold)
        if person is not None:
            image_vector = answers.vector(result.get("image_vector"))
            found = await _nearest(
                store, index, query, physical, "image", image_vector, person=person, exclude=None
            )
            return ExampleResult(found, "face", person=person)
    image_vector = answers.vector(result.get("image_vector"))
    if image_vector is not None and "image" in await store.dense_vectors(physical):
        return ExampleResult(
            await _nearest(store, index, query, physical, "image", image_vector, None, None), "image"
        )
    description = compose_text(visual)
    if not description.strip():
        raise ExampleError("nothing recognisable in the example image (no face, tag, caption or text)")
    found = await search(store, ml, index, replace(query, text=description), target)
    return ExampleResult(found, "description", description=description)


async def search_by_media(
    store: VectorStore, index: FileIndex, query: SearchQuery, target: SearchTarget, media_id: str
) -> ExampleResult:
    """Moments like a stored one: by its image vector, else its text vector; itself left out."""
    physical = target.physical
    try:
        uuid.UUID(media_id)
    except ValueError as exc:
        raise ExampleError("no such media") from exc
    if not await store.collection_exists(physical):
        raise ExampleError("no such media")
    vectors = (await store.retrieve_vectors(physical, [media_id])).get(media_id)
    if vectors is None:
        raise ExampleError("no such media")
    name = "image" if vectors.get("image") else "text"
    found = await _nearest(store, index, query, physical, name, vectors[name], None, media_id)
    return ExampleResult(found, "media")


async def _known_person(store: VectorStore, physical: str, face: list[float], threshold: float) -> str | None:
    """The cluster of the stored face nearest to `face`, when it is similar enough to be the same person."""
    faces = f"{physical}{FACE_SUFFIX}"
    if not await store.collection_exists(faces):
        return None
    nearest = await store.search(faces, SearchRequest(dense={"face": face}, sparse={}, limit=1))
    if not nearest or nearest[0].score < threshold:
        return None
    cluster = nearest[0].payload.get("cluster")
    return str(cluster) if cluster else None


async def _nearest(
    store: VectorStore,
    index: FileIndex,
    query: SearchQuery,
    physical: str,
    name: str,
    vector: list[float] | None,
    person: str | None,
    exclude: str | None,
) -> SearchResult:
    """One page of the moments nearest to `vector` (or, without one, a person's moments in stored order)."""
    if person is not None:
        query = replace(query, person=(), speaker=(), cluster=person)
    base = search_filter(query)
    wanted = query.offset + query.limit + 1 + (1 if exclude else 0)
    points: list[ScoredPoint]
    if vector is not None:
        request = SearchRequest(dense={name: vector}, sparse={}, limit=wanted, filter=base)
        points = await store.search(physical, request)
    else:
        points, _ = await store.scroll(physical, base or SearchFilter(), wanted, None)
    points = [p for p in points if p.id != exclude]
    page = points[query.offset : query.offset + query.limit]
    more = len(points) > query.offset + query.limit
    hashes = [str(p.payload["content_hash"]) for p in page if p.payload.get("content_hash")]
    paths = await index.paths_of(physical, hashes)
    proofs: dict[str, Any] = {}
    hits = [make_hit([p], paths.get(str(p.payload.get("content_hash"))), query, proofs, {}) for p in page]
    return SearchResult(hits, not hits, query.offset + query.limit if more else None)
