"""A stand-in Qdrant server for tests and benchmarks: Qdrant's REST API over qdrant-client's local mode.

Why it exists: the distributed mode runs several orchestrator worker processes against ONE vector store,
which must then be a Qdrant server (QDRANT_URL, orchestrator/clients/vectors_qdrant.py). No Qdrant server
binary can be installed on these machines, and qdrant-client's local mode lives inside one process. This
script is that one process: it holds a local-mode client (`QdrantClient(location=":memory:")`, or
`path=DIR` with `--path`) and serves the REST endpoints qdrant-client's REST transport calls for what the
adapter uses, so several processes share one store over HTTP. The engine is the same local mode the contract
tests (tests/clients/test_vectors_contract.py) already hold to the server's API; here it also gets the
server's wire format: bodies parsed into `qdrant_client.http.models` types, answers in Qdrant's envelope
`{"result": ..., "status": "ok", "time": s}` (errors `{"status": {"error": ...}, "time": s}` with the
server's codes: 400 bad input, 404 missing collection, 500 anything else), fields that are None left out as
the server leaves them out.

Endpoints: GET / (version: the embedded qdrant-client's, so its compatibility check passes), /healthz,
/livez, /readyz; collections: list, get, exists, create, delete, payload index; points: upsert, retrieve,
set payload, batch update, delete, count, scroll, query. Plus GET /admin/requests (not Qdrant's): the
method, path and query of the last requests served, so a test can see e.g. the `ordering` every write sent.

What it does not do: no sharding, replication or consensus. The cluster parameters of a new collection
(shard_number, replication_factor, write_consistency_factor) are checked (>= 1), kept in memory and reported
back by GET /collections/{name} as a server would (1 when not given; not kept across a restart with
--path), and change nothing. The write `ordering` (weak|medium|strong, checked) and read `consistency` are
accepted and ignored: one process applying one call at a time is trivially ordered and consistent. `wait` is
honoured trivially (every write is applied before the answer). No API key, no gRPC, no snapshots, no shard
keys, no other endpoint; payload indexes and HNSW parameters have no effect (local mode scans), though
the indexes asked for are listed in `payload_schema` as a server lists them.

Local mode is not thread-safe: every call runs on ONE worker thread (a single-thread executor), which also
opens and closes the client, so requests are applied one at a time in arrival order; request bodies are
parsed and answers serialised on that thread too, so the event loop only moves bytes. Local mode is slow
(docs/performance-limits.md): a stand-in for tests and for measuring the orchestrator's side, not a store
whose speed means anything.

    python -m scripts.qdrant_standin --host 127.0.0.1 --port 6333 [--path DIR]   (from the repository root)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from qdrant_client import QdrantClient
from qdrant_client.http import models

log = structlog.get_logger("qdrant_standin")

T = TypeVar("T")

# Requests remembered for GET /admin/requests (method, path, query: a few hundred bytes each).
JOURNAL_SIZE = 10_000
_CLUSTER_FIELDS = ("shard_number", "replication_factor", "write_consistency_factor")
_ORDERING = TypeAdapter(models.WriteOrdering)


class Refused(Exception):
    """An answer other than 200: the HTTP status and the server's kind of error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Local:
    """What lives on the engine's thread: the local-mode client, and what a server reports about each
    collection that local mode does not keep: the cluster parameters it was created with, its payload
    indexes."""

    client: QdrantClient
    cluster: dict[str, dict[str, int]] = field(default_factory=dict)
    indexes: dict[str, dict[str, models.PayloadSchemaType]] = field(default_factory=dict)


class Engine:
    """`Local` and the one thread every call to it runs on (opening and closing the client included)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-local")
        self._local: Local | None = None

    def _open(self) -> None:
        if self._path is None:
            client = QdrantClient(location=":memory:")
        else:
            client = QdrantClient(path=str(self._path))
        self._local = Local(client)

    def _close(self) -> None:
        if self._local is not None:
            self._local.client.close()
            self._local = None

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._open)

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    async def call(self, collection: str | None, op: Callable[[Local], T]) -> T:
        """Run `op` on the engine's thread after every call queued before it; its errors become answers."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._apply, collection, op)

    def _apply(self, collection: str | None, op: Callable[[Local], T]) -> T:
        local = self._local
        if local is None:
            raise Refused(503, "Service unavailable: the engine is not open")
        try:
            return op(local)
        except Refused:
            raise
        except ValueError as exc:  # local mode's "not found" and its input checks (ValidationError too)
            if collection is not None and not local.client.collection_exists(collection):
                raise Refused(404, f"Not found: Collection `{collection}` doesn't exist!") from exc
            raise Refused(400, f"Wrong input: {exc}") from exc
        except Exception as exc:
            log.exception("qdrant_standin.failed", collection=collection)
            raise Refused(500, f"Service internal error: {exc}") from exc


# --- the operations: (local, collection name, parsed body, wait) -> result, on the engine's thread ----------


def _update_result(wait: bool) -> models.UpdateResult:
    status = models.UpdateStatus.COMPLETED if wait else models.UpdateStatus.ACKNOWLEDGED
    return models.UpdateResult(operation_id=0, status=status)


def _no_shard_key(shard_key: object) -> None:
    if shard_key is not None:
        raise Refused(400, "Bad request: the stand-in has no shard keys")


def list_collections(local: Local, _name: str, _body: None, _wait: bool) -> object:
    return local.client.get_collections()


def collection_exists(local: Local, name: str, _body: None, _wait: bool) -> object:
    return models.CollectionExistence(exists=local.client.collection_exists(name))


def get_collection(local: Local, name: str, _body: None, _wait: bool) -> object:
    info = local.client.get_collection(name)
    # As a server reports them: the cluster parameters it was created with, else one node's default (1),
    # and the payload indexes asked for (so a second ensure_collection does not ask again).
    asked = local.cluster.get(name, {})
    params = info.config.params.model_copy(update={f: asked.get(f, 1) for f in _CLUSTER_FIELDS})
    indexed = info.points_count or 0
    schema = {
        field_name: models.PayloadIndexInfo(data_type=data_type, points=indexed)
        for field_name, data_type in local.indexes.get(name, {}).items()
    }
    config = info.config.model_copy(update={"params": params})
    return info.model_copy(update={"config": config, "payload_schema": {**info.payload_schema, **schema}})


def create_collection(local: Local, name: str, body: models.CreateCollection, _wait: bool) -> object:
    asked: dict[str, int] = {f: getattr(body, f) for f in _CLUSTER_FIELDS if getattr(body, f) is not None}
    for key, value in asked.items():
        if value < 1:
            raise Refused(400, f"Format error in JSON body: {key} must be at least 1, got {value}")
    created = local.client.create_collection(
        name, vectors_config=body.vectors, sparse_vectors_config=body.sparse_vectors, metadata=body.metadata
    )
    local.cluster[name] = asked
    local.indexes[name] = {}
    return created


def delete_collection(local: Local, name: str, _body: None, _wait: bool) -> object:
    local.cluster.pop(name, None)
    local.indexes.pop(name, None)
    return local.client.delete_collection(name)


def create_index(local: Local, name: str, body: models.CreateFieldIndex, wait: bool) -> object:
    schema = body.field_schema
    if isinstance(schema, models.PayloadSchemaType):
        data_type = schema
    elif schema is not None:  # an index with parameters: its type is in them
        data_type = models.PayloadSchemaType(schema.type)
    else:
        raise Refused(400, "Wrong input: field_schema is required")
    local.client.create_payload_index(name, body.field_name, schema)
    local.indexes.setdefault(name, {})[body.field_name] = data_type
    return _update_result(wait)


def upsert(local: Local, name: str, body: models.PointInsertOperations, wait: bool) -> object:
    _no_shard_key(body.shard_key)
    points = body.batch if isinstance(body, models.PointsBatch) else body.points
    local.client.upsert(name, points, update_filter=body.update_filter, update_mode=body.update_mode)
    return _update_result(wait)


def retrieve(local: Local, name: str, body: models.PointRequest, _wait: bool) -> object:
    _no_shard_key(body.shard_key)
    return local.client.retrieve(
        name,
        body.ids,
        with_payload=True if body.with_payload is None else body.with_payload,
        with_vectors=False if body.with_vector is None else body.with_vector,
    )


def set_payload(local: Local, name: str, body: models.SetPayload, wait: bool) -> object:
    _no_shard_key(body.shard_key)
    if body.points is not None:
        local.client.set_payload(name, body.payload, body.points, key=body.key)
    elif body.filter is not None:
        local.client.set_payload(name, body.payload, body.filter, key=body.key)
    else:
        raise Refused(400, "Wrong input: either points or filter is required")
    return _update_result(wait)


def batch_update(local: Local, name: str, body: models.UpdateOperations, wait: bool) -> object:
    local.client.batch_update_points(name, body.operations)
    return [_update_result(wait) for _ in body.operations]


def delete(local: Local, name: str, body: models.PointsSelector, wait: bool) -> object:
    _no_shard_key(body.shard_key)
    local.client.delete(name, body)
    return _update_result(wait)


def count(local: Local, name: str, body: models.CountRequest, _wait: bool) -> object:
    _no_shard_key(body.shard_key)
    return local.client.count(
        name, count_filter=body.filter, exact=True if body.exact is None else body.exact
    )


def scroll(local: Local, name: str, body: models.ScrollRequest, _wait: bool) -> object:
    _no_shard_key(body.shard_key)
    points, next_offset = local.client.scroll(
        name,
        scroll_filter=body.filter,
        limit=10 if body.limit is None else body.limit,
        offset=body.offset,
        order_by=body.order_by,
        with_payload=True if body.with_payload is None else body.with_payload,
        with_vectors=False if body.with_vector is None else body.with_vector,
    )
    return models.ScrollResult(points=points, next_page_offset=next_offset)


def query(local: Local, name: str, body: models.QueryRequest, _wait: bool) -> object:
    _no_shard_key(body.shard_key)
    return local.client.query_points(
        name,
        query=body.query,
        using=body.using,
        prefetch=body.prefetch,
        query_filter=body.filter,
        search_params=body.params,
        limit=10 if body.limit is None else body.limit,
        offset=body.offset,
        with_payload=False if body.with_payload is None else body.with_payload,
        with_vectors=False if body.with_vector is None else body.with_vector,
        score_threshold=body.score_threshold,
        lookup_from=body.lookup_from,
    )


@dataclass(frozen=True, slots=True)
class Route:
    """One REST endpoint: its body's type (None: no body) and whether an error on a missing collection is
    its 404 (the collection-level calls answer for themselves: exists says false, delete says false)."""

    method: str
    path: str
    op: Callable[[Local, str, Any, bool], object]
    body: TypeAdapter[Any] | None = None
    missing_is_404: bool = True


ROUTES = (
    Route("GET", "/collections", list_collections, missing_is_404=False),
    Route("GET", "/collections/{name}", get_collection),
    Route("GET", "/collections/{name}/exists", collection_exists, missing_is_404=False),
    Route("PUT", "/collections/{name}", create_collection, TypeAdapter(models.CreateCollection), False),
    Route("DELETE", "/collections/{name}", delete_collection, missing_is_404=False),
    Route("PUT", "/collections/{name}/index", create_index, TypeAdapter(models.CreateFieldIndex)),
    Route("PUT", "/collections/{name}/points", upsert, TypeAdapter(models.PointInsertOperations)),
    Route("POST", "/collections/{name}/points", retrieve, TypeAdapter(models.PointRequest)),
    Route("POST", "/collections/{name}/points/payload", set_payload, TypeAdapter(models.SetPayload)),
    Route("POST", "/collections/{name}/points/batch", batch_update, TypeAdapter(models.UpdateOperations)),
    Route("POST", "/collections/{name}/points/delete", delete, TypeAdapter(models.PointsSelector)),
    Route("POST", "/collections/{name}/points/count", count, TypeAdapter(models.CountRequest)),
    Route("POST", "/collections/{name}/points/scroll", scroll, TypeAdapter(models.ScrollRequest)),
    Route("POST", "/collections/{name}/points/query", query, TypeAdapter(models.QueryRequest)),
)


# --- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One request as GET /admin/requests lists it."""

    method: str
    path: str
    query: dict[str, str]


def _check_query(query: Mapping[str, str]) -> bool:
    """The write parameters, parsed as a server parses them (a bad value is refused); returns `wait`."""
    if "ordering" in query:
        try:
            _ORDERING.validate_python(query["ordering"])
        except ValidationError as exc:
            raise Refused(400, f"Query deserialize error: {exc.errors()[0]['msg']}") from exc
    wait = query.get("wait", "false")
    if wait not in ("true", "false"):
        raise Refused(400, f"Query deserialize error: wait={wait!r} is not a boolean")
    return wait == "true"


def _parse(raw: bytes, adapter: TypeAdapter[Any]) -> Any:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise Refused(400, f"Format error in JSON body: {exc}") from exc


def _envelope(result: object, started: float) -> bytes:
    """The server's answer: the result with its None fields left out (as the server's serde leaves them)."""
    body = {
        "result": to_jsonable_python(result, by_alias=True, exclude_none=True),
        "status": "ok",
        "time": time.perf_counter() - started,
    }
    return orjson.dumps(body)


def _refused(refused: Refused, started: float) -> Response:
    body = {"status": {"error": refused.message}, "time": time.perf_counter() - started}
    return Response(orjson.dumps(body), status_code=refused.status, media_type="application/json")


def create_app(path: Path | None) -> FastAPI:
    """The stand-in's app; the engine opens in the lifespan, before the port answers anything."""
    engine = Engine(path)
    journal: deque[Received] = deque(maxlen=JOURNAL_SIZE)  # touched only on the event loop

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        log.info("qdrant_standin.ready", path=str(path) if path else ":memory:")
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/")
    async def root() -> dict[str, str]:
        version = importlib.metadata.version("qdrant-client")
        return {"title": "qdrant - vector search engine", "version": version}

    @app.get("/healthz")
    @app.get("/livez")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("healthz check passed")

    @app.get("/readyz")
    async def readyz() -> PlainTextResponse:
        return PlainTextResponse("all shards are ready")

    @app.get("/admin/requests")
    async def received() -> list[dict[str, Any]]:
        return [{"method": r.method, "path": r.path, "query": r.query} for r in journal]

    def endpoint(route: Route) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            started = time.perf_counter()
            query = dict(request.query_params)
            journal.append(Received(request.method, request.url.path, query))
            name = str(request.path_params.get("name", ""))
            raw = await request.body()

            def answer(local: Local, wait: bool) -> bytes:
                # On the engine's thread: parsing and serialising (CPU, large for an upsert or a scroll)
                # stay off the event loop too.
                body = _parse(raw, route.body) if route.body is not None else None
                return _envelope(route.op(local, name, body, wait), started)

            try:
                wait = _check_query(query)
                collection = name if route.missing_is_404 else None
                content = await engine.call(collection, lambda local: answer(local, wait))
            except Refused as refused:
                return _refused(refused, started)
            return Response(content, media_type="application/json")

        return serve

    for route in ROUTES:
        app.add_api_route(route.path, endpoint(route), methods=[route.method])
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A stand-in Qdrant server over qdrant-client's local mode.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", type=Path, default=None, help="keep the points in DIR (default: in memory)")
    args = parser.parse_args(argv)
    # Local mode says, rightly, that it ignores payload indexes and HNSW; so does this docstring.
    warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
    warnings.filterwarnings("ignore", "Local mode performs exact", UserWarning)
    uvicorn.run(
        create_app(args.path),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
