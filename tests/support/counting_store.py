"""A real vector store wrapped to count write calls: the tests count upserts instead of assuming them."""

from __future__ import annotations

from typing import Any

from orchestrator.clients.vectors import (
    CollectionSpec,
    PointRecord,
    ScoredPoint,
    SearchFilter,
    SearchRequest,
    VectorStore,
)


class CountingStore:
    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.upserts = 0
        self.upserted_points = 0
        self.payload_updates = 0
        self.deletes = 0

    def reset(self) -> None:
        self.upserts = self.upserted_points = self.payload_updates = self.deletes = 0

    async def ensure_collection(self, name: str, spec: CollectionSpec) -> None:
        await self.inner.ensure_collection(name, spec)

    async def collection_exists(self, name: str) -> bool:
        return await self.inner.collection_exists(name)

    async def list_collections(self) -> list[str]:
        return await self.inner.list_collections()

    async def delete_collection(self, name: str) -> None:
        await self.inner.delete_collection(name)

    async def upsert(self, name: str, points: list[PointRecord]) -> None:
        self.upserts += 1
        self.upserted_points += len(points)
        await self.inner.upsert(name, points)

    async def retrieve(self, name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        return await self.inner.retrieve(name, ids)

    async def retrieve_vectors(self, name: str, ids: list[str]) -> dict[str, dict[str, list[float]]]:
        return await self.inner.retrieve_vectors(name, ids)

    async def set_payload(self, name: str, ids: list[str], payload: dict[str, Any]) -> None:
        self.payload_updates += 1
        await self.inner.set_payload(name, ids, payload)

    async def set_payloads(self, name: str, updates: dict[str, dict[str, Any]]) -> None:
        self.payload_updates += 1
        await self.inner.set_payloads(name, updates)

    async def delete(self, name: str, ids: list[str]) -> None:
        self.deletes += 1
        await self.inner.delete(name, ids)

    async def count(self, name: str) -> int:
        return await self.inner.count(name)

    async def dense_vectors(self, name: str) -> dict[str, int]:
        return await self.inner.dense_vectors(name)

    async def scroll(
        self, name: str, filter: SearchFilter | None, limit: int, offset: str | None
    ) -> tuple[list[ScoredPoint], str | None]:
        return await self.inner.scroll(name, filter, limit, offset)

    async def search(self, name: str, request: SearchRequest) -> list[ScoredPoint]:
        return await self.inner.search(name, request)

    async def optimize(self, name: str) -> None:
        await self.inner.optimize(name)

    async def close(self) -> None:
        await self.inner.close()
