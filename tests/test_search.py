import asyncio
import time
from pathlib import Path

import pytest

from orchestrator.clients.ml import MLClient, MLUnavailableError
from orchestrator.clients.vectors import CollectionSpec, PointRecord, ScoredPoint
from orchestrator.clients.vectors_edge import EdgeVectorStore
from orchestrator.file_index import FileIndex
from orchestrator.ids import point_id
from orchestrator.search import SEARCH_ML_DEADLINE_S, SearchQuery, rerank, search
from tests.support.silent_server import silent_server


def _words(text: str, start: float, step: float = 0.4) -> list[list[object]]:
    return [
        [w, round(start + i * step, 2), round(start + i * step + 0.3, 2)] for i, w in enumerate(text.split())
    ]


def test_hits_holding_more_of_the_querys_words_come_first() -> None:
    points = [
        ScoredPoint(f"inv-{n}", 0.5, {"text": f"Text: INVOICE 2024-{n:04d} TOTAL DUE"})
        for n in range(180, 186)
    ]
    points.insert(4, ScoredPoint("wanted", 0.4, {"text": "Text: INVOICE 2024-0173 TOTAL DUE"}))
    ranked = [p.id for p in rerank(points, "invoice 2024-0173")]
    assert ranked[0] == "wanted" and ranked[1:] == [p.id for p in points if p.id != "wanted"]
    # Below KEYWORD_COVERAGE nothing moves: a paraphrase keeps the fused (meaning) order.
    assert [p.id for p in rerank(points, "bill amount owed for services")] == [p.id for p in points]


def _point(pid: str, words: list[list[object]]) -> ScoredPoint:
    return ScoredPoint(pid, 0.5, {"words": words})


def test_a_spoken_phrase_outranks_chunks_about_the_same_thing() -> None:
    points = [
        _point("photo", []),
        _point("similar", _words("the ferry was electric and the orchestra played", 0.0)),
        _point("said", _words("then the orchestra launched an electric ferry on Monday", 0.0)),
    ]
    ranked = [p.id for p in rerank(points, "The orchestra launched an electric ferry")]
    assert ranked == ["said", "similar", "photo"]  # coverage 4/4, then 3/4 ("launched" missing)
    # Short queries keep the fused order (one spoken word says little).
    assert [p.id for p in rerank(points, "electric ferry")] == ["photo", "similar", "said"]


class _FakeML:
    """Embeds a query as fixed vectors per space (the ML client's embed_text signature)."""

    def __init__(self) -> None:
        self.spaces: list[str] = []

    async def embed_text(
        self, texts: list[str], space: str = "text", **_: object
    ) -> list[list[float] | None]:
        self.spaces.append(space)
        return [[1.0, 0.0, 0.0, 0.0] if space == "image_text" else [0.0, 1.0, 0.0, 0.0] for _ in texts]


async def test_search_uses_image_vectors_when_the_collection_has_them(tmp_path: Path) -> None:
    """A collection made with an image–text model: the query is embedded in both spaces and both branches
    are fused, so a point whose image vector matches is found though its text vector does not."""
    store = EdgeVectorStore(tmp_path / "edge")
    index = FileIndex(tmp_path / "index.sqlite3")
    await index.open()
    try:
        await store.ensure_collection("clip", CollectionSpec(dense={"text": 4, "image": 4}))
        await store.upsert(
            "clip",
            [
                PointRecord(
                    point_id("a" * 8, 0), {"text": [0, 0, 1, 0], "image": [1, 0, 0, 0]}, {}, {"path": "/a"}
                ),
                # Its text matches the query best, but it has no image vector (its image branch did not run):
                # first in the text branch alone, second once the image branch is fused. (With an image
                # vector of its own, the branches' opposite ranks fused to an exact RRF tie: a coin toss.)
                PointRecord(point_id("b" * 8, 0), {"text": [0, 1, 0, 0]}, {}, {"path": "/b"}),
            ],
        )
        ml = _FakeML()
        hits = (await search(store, ml, index, SearchQuery("a red car", "clip", limit=1))).hits  # type: ignore[arg-type]
        assert ml.spaces == ["text", "image_text"]
        assert [h.path for h in hits] == ["/a"]
        await store.ensure_collection("plain", CollectionSpec(dense={"text": 4}))
        ml.spaces.clear()
        assert (await search(store, ml, index, SearchQuery("a red car", "plain"))).hits == []  # type: ignore[arg-type]
        assert ml.spaces == ["text"]
    finally:
        await index.close()
        await store.close()


async def test_a_replica_that_never_answers_cannot_hold_a_search(tmp_path: Path) -> None:
    """The search's own short timeouts: the only replica accepts and never answers; the search gives up
    after SEARCH_ML_DEADLINE_S (an HTTP 503 at the API), not after the client's 300 s request timeout."""
    store = EdgeVectorStore(tmp_path / "edge")
    index = FileIndex(tmp_path / "index.sqlite3")
    await index.open()
    try:
        await store.ensure_collection("media", CollectionSpec(dense={"text": 4, "image": 4}))
        async with silent_server() as silent:
            ml = MLClient([silent.url], timeout_s=300, retry_deadline_s=600)
            started = time.monotonic()
            try:
                with pytest.raises(MLUnavailableError, match="no answer within"):
                    await asyncio.wait_for(search(store, ml, index, SearchQuery("a red car", "media")), 60)
            finally:
                await ml.close()
            elapsed = time.monotonic() - started
        assert elapsed < SEARCH_ML_DEADLINE_S + 1.5  # both spaces embedded at once, within one deadline
        assert silent.connections >= 2
    finally:
        await index.close()
        await store.close()


async def test_group_by_media_folds_a_files_moments_under_its_best(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "edge")
    index = FileIndex(tmp_path / "index.sqlite3")
    await index.open()
    try:
        await store.ensure_collection("av", CollectionSpec(dense={"text": 4}))

        def chunk(content: str, n: int, vector: list[float]) -> PointRecord:
            payload = {
                "content_hash": content,
                "start_s": 30.0 * n,
                "end_s": 30.0 * n + 30,
                "path": f"/{content}",
            }
            return PointRecord(point_id(content, n), {"text": vector}, {}, payload)

        # The query's vector is [0, 1, 0, 0]: "talk" chunks 2 and 0 are nearest, then "clip", then "talk" 1.
        await store.upsert(
            "av",
            [
                chunk("talk", 0, [0.2, 1, 0, 0]),
                chunk("talk", 1, [1, 0.3, 0, 0]),
                chunk("talk", 2, [0, 1, 0, 0]),
                chunk("clip", 0, [0.5, 1, 0, 0]),
            ],
        )
        ml = _FakeML()
        grouped = await search(store, ml, index, SearchQuery("x", "av", group_by="media"))  # type: ignore[arg-type]
        assert [h.path for h in grouped.hits] == ["/talk", "/clip"]
        assert (grouped.hits[0].start_s, [m.start_s for m in grouped.hits[0].moments]) == (60.0, [0.0, 30.0])
        assert grouped.hits[1].moments == [] and grouped.next_offset is None
        page = await search(store, ml, index, SearchQuery("x", "av", limit=1, group_by="media"))  # type: ignore[arg-type]
        assert [h.path for h in page.hits] == ["/talk"] and page.next_offset == 1
        flat = await search(store, ml, index, SearchQuery("x", "av", limit=2))  # type: ignore[arg-type]
        rest = await search(store, ml, index, SearchQuery("x", "av", limit=2, offset=2))  # type: ignore[arg-type]
        assert [h.start_s for h in flat.hits + rest.hits] == [60.0, 0.0, 0.0, 30.0]
        assert flat.next_offset == 2 and rest.next_offset is None
    finally:
        await index.close()
        await store.close()
