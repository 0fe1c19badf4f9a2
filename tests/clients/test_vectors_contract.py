"""One contract for both VectorStore adapters: embedded Qdrant Edge, and qdrant-client both in local mode
and over HTTP to the stand-in Qdrant server (scripts/qdrant_standin.py, one process per session: this checks
that the stand-in speaks what the adapter asks of a server).

Every test in the first part runs against all three; the Edge-only tests at the end cover what only the
embedded engine has: files on disk, reopening, a process dying after a write.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from orchestrator.clients.vector_factory import open_vector_store
from orchestrator.clients.vectors import (
    CollectionNotFoundError,
    CollectionSpec,
    CollectionSpecMismatchError,
    PointRecord,
    ScoredPoint,
    SearchFilter,
    SearchRequest,
    SparseVector,
    VectorStore,
)
from orchestrator.clients.vectors_edge import EdgeVectorStore
from orchestrator.clients.vectors_qdrant import QdrantServerVectorStore
from tests.support.qdrant_server import QdrantStandIn

# Local mode says, rightly, that it ignores payload indexes and HNSW parameters.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
]

SPEC = CollectionSpec(
    dense={"text": 4, "image": 3},
    sparse=("sparse",),
    keyword_indexes=("kind", "people"),
    float_indexes=("start",),
)
COLL = "chunks"


def pid(label: str) -> str:
    """A stable UUID per readable label, so failures name the point."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, label))


def point(
    label: str,
    text: list[float] | None = None,
    *,
    image: list[float] | None = None,
    terms: dict[int, float] | None = None,
    **payload: object,
) -> PointRecord:
    dense = {}
    if text is not None:
        dense["text"] = text
    if image is not None:
        dense["image"] = image
    sparse = {}
    if terms:
        sparse["sparse"] = SparseVector(list(terms), list(terms.values()))
    return PointRecord(id=pid(label), dense=dense, sparse=sparse, payload={"label": label, **payload})


def labels(hits: list[ScoredPoint]) -> list[str]:
    return [str(h.payload["label"]) for h in hits]


@pytest.fixture(scope="module")
async def standin_store(
    qdrant_standin: QdrantStandIn, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VectorStore]:
    """The session's stand-in server, opened by the factory as QDRANT_URL opens it; one client for the
    module (building one costs ~0.1 s: an HTTP client and its version check)."""
    store = open_vector_store(tmp_path_factory.mktemp("standin"), qdrant_standin.url, None)
    yield store
    await store.close()


@pytest.fixture(params=["edge", "server", "standin"])
def engine(request: pytest.FixtureRequest) -> tuple[str, VectorStore | None]:
    """Which store the contract runs against; the stand-in's store when it is the one (started only then)."""
    shared = request.getfixturevalue("standin_store") if request.param == "standin" else None
    return request.param, shared


async def _clear(store: VectorStore) -> None:
    for name in await store.list_collections():
        await store.delete_collection(name)


@pytest.fixture
async def store(engine: tuple[str, VectorStore | None], tmp_path: Path) -> AsyncIterator[VectorStore]:
    kind, shared = engine
    if shared is not None:  # the stand-in's: empty for each test, and left empty
        await _clear(shared)
        yield shared
        await _clear(shared)
        return
    vector_store: VectorStore
    if kind == "edge":
        vector_store = EdgeVectorStore(tmp_path / "edge")
    else:
        vector_store = QdrantServerVectorStore(AsyncQdrantClient(location=":memory:"))
    yield vector_store
    await vector_store.close()


@pytest.fixture
async def coll(store: VectorStore) -> VectorStore:
    await store.ensure_collection(COLL, SPEC)
    return store


# --- collections --------------------------------------------------------------------------------


async def test_ensure_collection_is_idempotent(store: VectorStore) -> None:
    assert not await store.collection_exists(COLL)
    await store.ensure_collection(COLL, SPEC)
    await store.upsert(COLL, [point("a", [1, 0, 0, 0])])
    await store.ensure_collection(COLL, SPEC)
    assert await store.collection_exists(COLL)
    assert await store.list_collections() == [COLL]
    assert await store.count(COLL) == 1  # the second call kept the data


async def test_dense_vectors_are_reported(coll: VectorStore) -> None:
    assert await coll.dense_vectors(COLL) == SPEC.dense


async def test_ensure_collection_refuses_other_vectors(coll: VectorStore) -> None:
    with pytest.raises(CollectionSpecMismatchError):
        await coll.ensure_collection(COLL, CollectionSpec(dense={"text": 8}))


async def test_list_and_delete_collections(store: VectorStore) -> None:
    await store.ensure_collection("b_faces", CollectionSpec(dense={"face": 2}, sparse=()))
    await store.ensure_collection("a-main", SPEC)
    assert await store.list_collections() == ["a-main", "b_faces"]
    await store.delete_collection("b_faces")
    await store.delete_collection("b_faces")  # deleting what is gone is not an error
    assert await store.list_collections() == ["a-main"]
    assert not await store.collection_exists("b_faces")
    with pytest.raises(CollectionNotFoundError):
        await store.count("b_faces")


@pytest.mark.parametrize("name", ["", "..", "../x", "a/b", "a b", "é", "x" * 200, "a\x00b"])
async def test_invalid_collection_name_is_refused(store: VectorStore, name: str) -> None:
    with pytest.raises(ValueError, match="invalid collection name"):
        await store.ensure_collection(name, SPEC)
    with pytest.raises(ValueError, match="invalid collection name"):
        await store.count(name)
    assert await store.list_collections() == []


async def test_missing_collection_is_reported(store: VectorStore) -> None:
    with pytest.raises(CollectionNotFoundError):
        await store.upsert("nope", [point("a", [1, 0, 0, 0])])
    with pytest.raises(CollectionNotFoundError):
        await store.search("nope", SearchRequest(dense={"text": [1, 0, 0, 0]}, sparse={}))


# --- points ---------------------------------------------------------------------------------


async def test_upsert_then_count_and_retrieve(coll: VectorStore) -> None:
    await coll.upsert(COLL, [point("a", [1, 0, 0, 0], kind="image"), point("b", [0, 1, 0, 0], n=2)])
    assert await coll.count(COLL) == 2
    got = await coll.retrieve(COLL, [pid("a"), pid("b"), pid("missing")])
    assert got == {pid("a"): {"label": "a", "kind": "image"}, pid("b"): {"label": "b", "n": 2}}


async def test_retrieve_answers_under_the_callers_id_spelling(coll: VectorStore) -> None:
    await coll.upsert(COLL, [point("a", [1, 0, 0, 0])])
    upper = pid("a").upper()
    assert list(await coll.retrieve(COLL, [upper])) == [upper]


async def test_non_uuid_id_is_refused(coll: VectorStore) -> None:
    bad = PointRecord(id="not-a-uuid", dense={"text": [1, 0, 0, 0]}, sparse={}, payload={})
    with pytest.raises(ValueError, match="UUID"):
        await coll.upsert(COLL, [bad])


async def test_upsert_same_id_twice_replaces_the_point(coll: VectorStore) -> None:
    await coll.upsert(COLL, [point("a", [1, 0, 0, 0], kind="image", old=True)])
    await coll.upsert(COLL, [point("a", [0, 1, 0, 0], kind="video")])
    assert await coll.count(COLL) == 1
    assert await coll.retrieve(COLL, [pid("a")]) == {pid("a"): {"label": "a", "kind": "video"}}


async def test_set_payload_merges_keys(coll: VectorStore) -> None:
    await coll.upsert(COLL, [point("a", [1, 0, 0, 0], kind="image", paths=["/x"])])
    await coll.set_payload(COLL, [pid("a"), pid("missing")], {"paths": ["/x", "/y"], "done": 1})
    assert await coll.retrieve(COLL, [pid("a")]) == {
        pid("a"): {"label": "a", "kind": "image", "paths": ["/x", "/y"], "done": 1}
    }
    assert await coll.count(COLL) == 1  # the missing id was skipped, not created


async def test_set_payloads_gives_each_point_its_own_payload(coll: VectorStore) -> None:
    await coll.upsert(COLL, [point(x, [1, 0, 0, 0], paths=["/old"]) for x in "ab"])
    await coll.set_payloads(
        COLL, {pid("a"): {"paths": ["/a1", "/a2"]}, pid("b"): {"paths": ["/b"], "n": 2}, pid("zz"): {"x": 1}}
    )
    got = await coll.retrieve(COLL, [pid("a"), pid("b")])
    assert got[pid("a")]["paths"] == ["/a1", "/a2"] and got[pid("a")]["label"] == "a"
    assert got[pid("b")] == {"label": "b", "paths": ["/b"], "n": 2}
    assert await coll.count(COLL) == 2


async def test_delete_removes_points(coll: VectorStore) -> None:
    await coll.upsert(COLL, [point(x, [1, 0, 0, 0]) for x in "abc"])
    await coll.delete(COLL, [pid("a"), pid("c"), pid("missing")])
    assert await coll.count(COLL) == 1
    assert list(await coll.retrieve(COLL, [pid("a"), pid("b"), pid("c")])) == [pid("b")]
    hits = await coll.search(COLL, SearchRequest(dense={"text": [1, 0, 0, 0]}, sparse={}))
    assert labels(hits) == ["b"]


async def test_points_lacking_a_named_vector_are_fine(coll: VectorStore) -> None:
    await coll.upsert(
        COLL,
        [
            point("text-only", [1, 0, 0, 0]),
            point("image-only", image=[1, 0, 0]),
            point("no-vectors"),
            point("both", [0, 1, 0, 0], image=[0, 1, 0], terms={7: 1.0}),
        ],
    )
    assert await coll.count(COLL) == 4
    by_text = await coll.search(COLL, SearchRequest(dense={"text": [1, 0, 0, 0]}, sparse={}))
    assert labels(by_text) == ["text-only", "both"]
    by_image = await coll.search(COLL, SearchRequest(dense={"image": [1, 0, 0]}, sparse={}))
    assert labels(by_image) == ["image-only", "both"]


# --- search ---------------------------------------------------------------------------------


async def test_dense_search_ranks_the_nearest_first(coll: VectorStore) -> None:
    await coll.upsert(
        COLL,
        [
            point("east", [1, 0, 0, 0]),
            point("north-east", [1, 1, 0, 0]),
            point("north", [0, 1, 0, 0]),
            point("up", [0, 0, 1, 0]),
        ],
    )
    hits = await coll.search(COLL, SearchRequest(dense={"text": [0.9, 1, 0, 0]}, sparse={}, limit=3))
    assert labels(hits) == ["north-east", "north", "east"]
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].score == pytest.approx(0.9986, abs=1e-3)  # cosine
    assert hits[0].payload == {"label": "north-east"}


async def test_sparse_search_finds_the_point_with_the_term(coll: VectorStore) -> None:
    await coll.upsert(
        COLL,
        [
            point("flood", terms={10: 1.0, 42: 1.0}),
            point("rain", terms={10: 1.0, 11: 1.0}),
            point("sun", terms={12: 1.0}),
        ],
    )
    hits = await coll.search(COLL, SearchRequest(dense={}, sparse={"sparse": SparseVector([42], [1.0])}))
    assert labels(hits) == ["flood"]
    # IDF: the rare term 42 outweighs the common term 10.
    both = await coll.search(
        COLL, SearchRequest(dense={}, sparse={"sparse": SparseVector([10, 42], [1.0, 1.0])})
    )
    assert labels(both) == ["flood", "rain"]


async def test_rrf_fuses_dense_and_sparse(coll: VectorStore) -> None:
    # "dense-top" wins the dense branch alone, "sparse-top" the sparse branch alone; "both" is second in
    # each, and only fusion puts it first (1/62 + 1/62 > 1/61).
    await coll.upsert(
        COLL,
        [
            point("dense-top", [1, 0, 0, 0]),
            point("both", [1, 0.3, 0, 0], terms={5: 1.0, 6: 1.0}),
            point("sparse-top", [0, 0, 1, 0], terms={5: 1.0, 6: 1.0, 9: 1.0}),
            point("far", [0, 0, 0, 1], terms={1: 1.0}),
        ],
    )
    dense = {"text": [1.0, 0.0, 0.0, 0.0]}
    sparse = {"sparse": SparseVector([5, 6, 9], [1.0, 1.0, 1.0])}
    dense_only = await coll.search(COLL, SearchRequest(dense=dense, sparse={}, limit=2))
    sparse_only = await coll.search(COLL, SearchRequest(dense={}, sparse=sparse, limit=2))
    assert labels(dense_only) == ["dense-top", "both"]
    assert labels(sparse_only) == ["sparse-top", "both"]
    # prefetch_limit=2: every point is in the dense list somewhere, so a longer list would let
    # "sparse-top" collect a third-rank dense score too.
    fused = await coll.search(COLL, SearchRequest(dense=dense, sparse=sparse, limit=3, prefetch_limit=2))
    assert labels(fused)[0] == "both"
    assert set(labels(fused)) == {"both", "dense-top", "sparse-top"}
    assert fused[0].score == pytest.approx(2 / 62, rel=0.05)


async def test_search_and_retrieve_return_the_vectors_asked_for(coll: VectorStore) -> None:
    await coll.upsert(COLL, [point("a", [3, 4, 0, 0]), point("b", [0, 1, 0, 0])])
    fused = SearchRequest(
        dense={"text": [1, 0, 0, 0]},
        sparse={"sparse": SparseVector([1], [1.0])},
        limit=2,
        with_vectors=("text",),
    )
    for request in (fused, SearchRequest(dense={"text": [1, 0, 0, 0]}, sparse={}, with_vectors=("text",))):
        hits = {h.id: h.vectors for h in await coll.search(COLL, request)}
        assert hits[pid("a")]["text"] == pytest.approx([0.6, 0.8, 0, 0])  # cosine: stored normalised
    plain = await coll.search(COLL, SearchRequest(dense={"text": [1, 0, 0, 0]}, sparse={}))
    assert all(h.vectors == {} for h in plain)
    got = await coll.retrieve_vectors(COLL, [pid("b"), pid("missing")])
    assert list(got) == [pid("b")] and got[pid("b")]["text"] == pytest.approx([0, 1, 0, 0])


async def test_search_needs_a_query_vector(coll: VectorStore) -> None:
    with pytest.raises(ValueError, match="at least one"):
        await coll.search(COLL, SearchRequest(dense={}, sparse={}))


# --- filters ----------------------------------------------------------------------------------


@pytest.fixture
async def media(coll: VectorStore) -> VectorStore:
    await coll.upsert(
        COLL,
        [
            point("img", [1, 0, 0, 0], terms={3: 1.0}, kind="image", start=0.0, people=["ann"]),
            point(
                "vid-early", [1, 0.1, 0, 0], terms={3: 1.0, 8: 1.0}, kind="video", start=5.0, people=["bob"]
            ),
            point("vid-late", [1, 0.2, 0, 0], terms={3: 1.0}, kind="video", start=95.5),
            point("aud", [1, 0.3, 0, 0], terms={3: 1.0}, kind="audio", start=30.0, people=["ann", "cy"]),
        ],
    )
    return coll


async def _filtered(store: VectorStore, search_filter: SearchFilter) -> list[str]:
    hits = await store.search(
        COLL, SearchRequest(dense={"text": [1, 0, 0, 0]}, sparse={}, filter=search_filter)
    )
    return labels(hits)


async def test_filter_by_keyword_match(media: VectorStore) -> None:
    assert await _filtered(media, SearchFilter(match={"kind": "video"})) == ["vid-early", "vid-late"]
    # A list payload matches when any element equals the value.
    assert await _filtered(media, SearchFilter(match={"people": "ann"})) == ["img", "aud"]


async def test_filter_by_any_of(media: VectorStore) -> None:
    assert await _filtered(media, SearchFilter(match={"kind": ["image", "audio"]})) == ["img", "aud"]


async def test_filter_by_float_range(media: VectorStore) -> None:
    assert await _filtered(media, SearchFilter(ranges={"start": (5.0, 30.0)})) == ["vid-early", "aud"]
    assert await _filtered(media, SearchFilter(ranges={"start": (30.0, None)})) == ["vid-late", "aud"]
    assert await _filtered(media, SearchFilter(ranges={"start": (None, 4.9)})) == ["img"]


async def test_filters_combine_and_apply_to_fused_search(media: VectorStore) -> None:
    both = SearchFilter(match={"kind": "video"}, ranges={"start": (10.0, None)})
    assert await _filtered(media, both) == ["vid-late"]
    # Unfiltered, both branches would put "vid-early" first; with prefetch_limit=1 a filter applied only
    # after fusion would leave nothing, so this checks that each branch is filtered.
    request = SearchRequest(
        dense={"text": [1, 0.1, 0, 0]},
        sparse={"sparse": SparseVector([8, 3], [1.0, 1.0])},
        prefetch_limit=1,
    )
    assert labels(await media.search(COLL, request)) == ["vid-early"]
    filtered = SearchRequest(
        dense=request.dense,
        sparse=request.sparse,
        filter=SearchFilter(match={"kind": ["audio", "image"]}),
        prefetch_limit=1,
    )
    got = labels(await media.search(COLL, filtered))
    assert got and set(got) <= {"img", "aud"}


@pytest.mark.parametrize(
    "bad",
    [
        SearchFilter(match={"flag": True}),
        SearchFilter(match={"start": 5.0}),
        SearchFilter(match={"kind": []}),
        SearchFilter(match={"kind": ["a", 1]}),
        SearchFilter(ranges={"start": (None, None)}),
    ],
)
async def test_unsupported_filters_are_refused(media: VectorStore, bad: SearchFilter) -> None:
    with pytest.raises(ValueError):
        await _filtered(media, bad)


# --- scroll ---------------------------------------------------------------------------------


async def test_scroll_pages_through_everything_exactly_once(coll: VectorStore) -> None:
    await coll.upsert(
        COLL, [point(f"p{i}", [1, i, 0, 0], kind="even" if i % 2 == 0 else "odd") for i in range(23)]
    )
    seen: list[str] = []
    offset: str | None = None
    pages = 0
    while True:
        page, offset = await coll.scroll(COLL, None, 5, offset)
        seen.extend(p.id for p in page)
        pages += 1
        if offset is None:
            break
        assert pages < 10, "scroll does not terminate"
    assert sorted(seen) == sorted(pid(f"p{i}") for i in range(23))
    assert pages == 5

    odd: list[str] = []
    offset = None
    while True:
        page, offset = await coll.scroll(COLL, SearchFilter(match={"kind": "odd"}), 4, offset)
        odd.extend(p.payload["label"] for p in page)
        if offset is None:
            break
    assert sorted(odd) == sorted(f"p{i}" for i in range(1, 23, 2))


# --- optimize ---------------------------------------------------------------------------------


async def test_search_still_right_after_optimize(media: VectorStore) -> None:
    await media.optimize(COLL)
    assert await _filtered(media, SearchFilter(match={"kind": "video"})) == ["vid-early", "vid-late"]
    await media.upsert(COLL, [point("new", [0.99, 0, 0, 0], kind="video")])
    assert (await _filtered(media, SearchFilter(match={"kind": "video"})))[0] == "new"


# --- Edge only --------------------------------------------------------------------------------


async def test_edge_reopen_keeps_points_and_spec(tmp_path: Path) -> None:
    first = EdgeVectorStore(tmp_path)
    await first.ensure_collection(COLL, SPEC)
    await first.upsert(
        COLL, [point("a", [1, 0, 0, 0], terms={4: 1.0}, kind="image"), point("b", [0, 1, 0, 0])]
    )
    await first.close()
    with pytest.raises(RuntimeError, match="closed"):
        await first.count(COLL)

    second = EdgeVectorStore(tmp_path)
    try:
        assert await second.list_collections() == [COLL]
        assert await second.count(COLL) == 2
        hits = await second.search(COLL, SearchRequest(dense={}, sparse={"sparse": SparseVector([4], [1.0])}))
        assert labels(hits) == ["a"]
        assert labels((await second.scroll(COLL, SearchFilter(match={"kind": "image"}), 10, None))[0]) == [
            "a"
        ]
        await second.ensure_collection(COLL, SPEC)  # same spec: accepted as it is on disk
        with pytest.raises(CollectionSpecMismatchError):
            await second.ensure_collection(COLL, CollectionSpec(dense={"text": 4}))
    finally:
        await second.close()


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_edge_stores_shards_under_its_root_only(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "root")
    try:
        await store.ensure_collection(COLL, SPEC)
        assert await asyncio.to_thread(_names, tmp_path / "root" / COLL) == ["shard", "spec.json"]
        assert await asyncio.to_thread(_names, tmp_path) == ["root"]
    finally:
        await store.close()


async def test_edge_upsert_is_durable_when_the_process_dies(tmp_path: Path) -> None:
    """A process that upserts and then dies without close() must leave the points behind."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, pathlib
        from orchestrator.clients.vectors import CollectionSpec, PointRecord
        from orchestrator.clients.vectors_edge import EdgeVectorStore

        async def main() -> None:
            store = EdgeVectorStore(pathlib.Path({str(tmp_path)!r}))
            await store.ensure_collection("c", CollectionSpec(dense={{"text": 2}}))
            await store.upsert("c", [PointRecord({pid("x")!r}, {{"text": [1.0, 0.0]}}, {{}}, {{"k": 1}})])
            await store.set_payload("c", [{pid("x")!r}], {{"k": 2}})
            os._exit(0)  # no close, no flush at exit

        asyncio.run(main())
        """
    )
    repo = Path(__file__).parents[2]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=repo, env={"PYTHONPATH": str(repo)}
    )
    assert await asyncio.wait_for(child.wait(), timeout=60) == 0
    store = EdgeVectorStore(tmp_path)
    try:
        assert await store.retrieve("c", [pid("x")]) == {pid("x"): {"k": 2}}
    finally:
        await store.close()


async def test_edge_concurrent_writes_are_serialised(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path)
    try:
        await store.ensure_collection(COLL, SPEC)
        batches = [[point(f"{b}-{i}", [1, b, i, 0]) for i in range(10)] for b in range(8)]
        await asyncio.gather(*(store.upsert(COLL, batch) for batch in batches), store.count(COLL))
        assert await store.count(COLL) == 80
    finally:
        await store.close()


async def test_factory_picks_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edge = open_vector_store(tmp_path, None, None)
    assert isinstance(edge, EdgeVectorStore)
    await edge.ensure_collection(COLL, SPEC)
    assert await asyncio.to_thread((tmp_path / "qdrant_edge" / COLL / "spec.json").is_file)
    await edge.close()

    # No server can run here: record what the factory asks for and hand back local mode instead
    # (a real remote client would probe the URL from a background thread).
    asked: dict[str, object] = {}

    def fake_client(**kwargs: object) -> AsyncQdrantClient:
        asked.update(kwargs)
        return AsyncQdrantClient(location=":memory:")

    monkeypatch.setattr("qdrant_client.AsyncQdrantClient", fake_client)
    server = open_vector_store(tmp_path, "https://qdrant.example:6333", "secret")
    assert isinstance(server, QdrantServerVectorStore)
    assert asked == {"url": "https://qdrant.example:6333", "api_key": "secret"}
    await server.ensure_collection(COLL, SPEC)
    assert await server.list_collections() == [COLL]
    await server.close()
