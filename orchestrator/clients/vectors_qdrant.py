"""VectorStore over qdrant-client: a Qdrant server or cluster (QDRANT_URL), or local mode in tests.

Writes pass wait=True, so they return once the server has applied them to its WAL-backed storage, and the
cluster's write ordering (`QdrantCluster.write_ordering`, QDRANT_WRITE_ORDERING); new collections get its
shard and replica counts (orchestrator/clients/qdrant_cluster.py says why which defaults).
Local mode (`AsyncQdrantClient(location=":memory:")`) speaks the same API and runs the contract tests;
it ignores payload indexes and is far too slow to be a store (docs/performance-limits.md).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from orchestrator.clients.qdrant_cluster import QdrantCluster
from orchestrator.clients.vector_params import HNSW_EF_SEARCH
from orchestrator.clients.vectors import (
    RRF_K,
    CollectionNotFoundError,
    CollectionSpec,
    CollectionSpecMismatchError,
    PointRecord,
    ScoredPoint,
    SearchFilter,
    SearchRequest,
    SparseVector,
    canonical_id,
    dense_vectors_of,
    filter_conditions,
    search_branches,
    validate_collection_name,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


class QdrantServerVectorStore:
    """The VectorStore contract over an AsyncQdrantClient the caller built (and this store closes)."""

    def __init__(
        self, client: AsyncQdrantClient, hnsw_ef: int = HNSW_EF_SEARCH, cluster: QdrantCluster | None = None
    ) -> None:
        self._client = client
        self._cluster = cluster or QdrantCluster()
        self._ordering = models.WriteOrdering(self._cluster.write_ordering)
        # The same engine as Edge, so the ef measured there is the starting point here too.
        self._search_params = models.SearchParams(hnsw_ef=hnsw_ef)

    async def _guard(self, name: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call`; a failure on a collection that does not exist becomes CollectionNotFoundError.

        The server answers 404 and local mode raises ValueError; asking afterwards keeps the happy
        path at one round trip and avoids matching error texts.
        """
        validate_collection_name(name)
        try:
            return await call()
        except (UnexpectedResponse, ValueError) as exc:
            if not await self._client.collection_exists(name):
                raise CollectionNotFoundError(name) from exc
            raise

    # --- collections ------------------------------------------------------------------------

    async def ensure_collection(self, name: str, spec: CollectionSpec) -> None:
        validate_collection_name(name)
        if not await self._client.collection_exists(name):
            try:
                await self._client.create_collection(
                    name,
                    vectors_config={
                        vname: models.VectorParams(size=size, distance=models.Distance.COSINE)
                        for vname, size in spec.dense.items()
                    },
                    sparse_vectors_config={
                        vname: models.SparseVectorParams(modifier=models.Modifier.IDF)
                        for vname in spec.sparse
                    },
                    # None: not sent, the server's default.
                    shard_number=self._cluster.shard_number,
                    replication_factor=self._cluster.replication_factor,
                    write_consistency_factor=self._cluster.write_consistency_factor,
                )
                log.info("vectors.server.created", collection=name, spec=spec.to_json())
            except (UnexpectedResponse, ValueError):
                # Another process may have created it between the check and the create; then the
                # comparison below decides. Anything else is re-raised.
                if not await self._client.collection_exists(name):
                    raise
        info = await self._client.get_collection(name)
        _check_vectors(name, spec, info)
        wanted = [(f, models.PayloadSchemaType.KEYWORD) for f in spec.keyword_indexes]
        wanted += [(f, models.PayloadSchemaType.FLOAT) for f in spec.float_indexes]
        for field_name, schema in wanted:
            if field_name not in info.payload_schema:
                await self._client.create_payload_index(
                    name, field_name, schema, wait=True, ordering=self._ordering
                )

    async def collection_exists(self, name: str) -> bool:
        return await self._client.collection_exists(validate_collection_name(name))

    async def list_collections(self) -> list[str]:
        response = await self._client.get_collections()
        return sorted(c.name for c in response.collections)

    async def delete_collection(self, name: str) -> None:
        await self._client.delete_collection(validate_collection_name(name))

    # --- points -----------------------------------------------------------------------------

    async def upsert(self, name: str, points: list[PointRecord]) -> None:
        if not points:
            return
        structs = [
            models.PointStruct(id=canonical_id(p.id), vector=_server_vectors(p), payload=p.payload)
            for p in points
        ]
        await self._guard(
            name, lambda: self._client.upsert(name, structs, wait=True, ordering=self._ordering)
        )

    async def retrieve(self, name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        wanted = {canonical_id(i): i for i in ids}  # answer under the caller's spelling of each id
        records = await self._guard(
            name,
            lambda: self._client.retrieve(name, list(wanted), with_payload=True, with_vectors=False),
        )
        return {wanted[str(r.id)]: dict(r.payload or {}) for r in records}

    async def retrieve_vectors(self, name: str, ids: list[str]) -> dict[str, dict[str, list[float]]]:
        if not ids:
            return {}
        wanted = {canonical_id(i): i for i in ids}
        records = await self._guard(
            name,
            lambda: self._client.retrieve(name, list(wanted), with_payload=False, with_vectors=True),
        )
        return {wanted[str(r.id)]: dense_vectors_of(r.vector) for r in records}

    async def set_payload(self, name: str, ids: list[str], payload: dict[str, Any]) -> None:
        if not ids:
            return
        # By filter rather than by id list, so missing ids are skipped as on Edge.
        selector = models.Filter(must=[models.HasIdCondition(has_id=[canonical_id(i) for i in ids])])
        await self._guard(
            name,
            lambda: self._client.set_payload(name, payload, selector, wait=True, ordering=self._ordering),
        )

    async def set_payloads(self, name: str, updates: dict[str, dict[str, Any]]) -> None:
        if not updates:
            return
        operations: list[models.UpdateOperation] = [
            models.SetPayloadOperation(
                set_payload=models.SetPayload(
                    payload=payload,
                    filter=models.Filter(must=[models.HasIdCondition(has_id=[canonical_id(point)])]),
                )
            )
            for point, payload in updates.items()
        ]
        await self._guard(
            name,
            lambda: self._client.batch_update_points(name, operations, wait=True, ordering=self._ordering),
        )

    async def delete(self, name: str, ids: list[str]) -> None:
        if not ids:
            return
        selector = models.PointIdsList(points=[canonical_id(i) for i in ids])
        await self._guard(
            name, lambda: self._client.delete(name, selector, wait=True, ordering=self._ordering)
        )

    async def dense_vectors(self, name: str) -> dict[str, int]:
        info = await self._guard(name, lambda: self._client.get_collection(name))
        vectors = info.config.params.vectors
        return {vname: vp.size for vname, vp in vectors.items()} if isinstance(vectors, dict) else {}

    async def count(self, name: str) -> int:
        result = await self._guard(name, lambda: self._client.count(name, exact=True))
        return result.count

    async def scroll(
        self, name: str, filter: SearchFilter | None, limit: int, offset: str | None
    ) -> tuple[list[ScoredPoint], str | None]:
        if limit < 1:
            raise ValueError("scroll limit must be positive")
        start = canonical_id(offset) if offset is not None else None
        records, next_id = await self._guard(
            name,
            lambda: self._client.scroll(
                name,
                scroll_filter=_server_filter(filter),
                limit=limit,
                offset=start,
                with_payload=True,
                with_vectors=False,
            ),
        )
        points = [ScoredPoint(str(r.id), 0.0, dict(r.payload or {})) for r in records]
        return points, None if next_id is None else str(next_id)

    async def search(self, name: str, request: SearchRequest) -> list[ScoredPoint]:
        branches = search_branches(request)
        query_filter = _server_filter(request.filter)
        if len(branches) == 1:
            vname, vector = branches[0]
            call = functools.partial(
                self._client.query_points,
                name,
                query=_server_query_vector(vector),
                using=vname,
                query_filter=query_filter,
                search_params=self._search_params,
                limit=request.limit,
                with_payload=True,
                with_vectors=list(request.with_vectors) if request.with_vectors else False,
            )
        else:
            prefetch = [
                models.Prefetch(
                    query=_server_query_vector(vector),
                    using=vname,
                    filter=query_filter,
                    params=self._search_params,
                    limit=request.prefetch_limit,
                )
                for vname, vector in branches
            ]
            call = functools.partial(
                self._client.query_points,
                name,
                prefetch=prefetch,
                query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
                query_filter=query_filter,
                limit=request.limit,
                with_payload=True,
                with_vectors=list(request.with_vectors) if request.with_vectors else False,
            )
        response = await self._guard(name, call)
        return [
            ScoredPoint(str(p.id), float(p.score), dict(p.payload or {}), dense_vectors_of(p.vector))
            for p in response.points
        ]

    async def optimize(self, name: str) -> None:
        """A server builds its indexes in the background; nothing to do but check the name."""
        validate_collection_name(name)

    async def close(self) -> None:
        await self._client.close()


def _check_vectors(name: str, spec: CollectionSpec, info: models.CollectionInfo) -> None:
    params = info.config.params
    dense = params.vectors if isinstance(params.vectors, dict) else {}
    found_dense = {vname: vp.size for vname, vp in dense.items()}
    found_sparse = set(params.sparse_vectors or {})
    if found_dense != spec.dense or found_sparse != set(spec.sparse):
        raise CollectionSpecMismatchError(
            f"collection {name!r} has dense {found_dense} and sparse {sorted(found_sparse)}, "
            f"asked for {spec.to_json()}"
        )


def _server_vectors(point: PointRecord) -> dict[str, Any]:
    vectors: dict[str, Any] = dict(point.dense)
    for vname, sparse in point.sparse.items():
        vectors[vname] = models.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
    return vectors


def _server_query_vector(vector: list[float] | SparseVector) -> list[float] | models.SparseVector:
    if isinstance(vector, SparseVector):
        return models.SparseVector(indices=list(vector.indices), values=list(vector.values))
    return vector


def _server_filter(search_filter: SearchFilter | None) -> models.Filter | None:
    if search_filter is None:
        return None
    must: list[models.Condition] = []
    for key, kind, value in filter_conditions(search_filter):
        if kind == "value":
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        elif kind == "any":
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=value)))
        else:
            low, high = value
            must.append(models.FieldCondition(key=key, range=models.Range(gte=low, lte=high)))
    return models.Filter(must=must) if must else None
