"""Result cache (diskcache): ML results keyed by content hash + chunk + model versions + pipeline version.

A new model version misses; nothing else does. A file seen under another path or in another collection
reuses what is cached under its hash. Writes are batched in one transaction (docs/performance-limits.md:
~11k sets/s in transactions vs ~3k autocommitted).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import diskcache
import orjson

from orchestrator.ids import PIPELINE_VERSION
from orchestrator.serial import SerialExecutor


def models_signature(models: dict[str, dict[str, Any]], tasks: list[str]) -> str:
    """A short digest of the (name, version) of every model whose output a chunk record depends on."""
    parts = [f"{t}={models[t].get('name')}@{models[t].get('version')}" for t in sorted(tasks) if t in models]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


def result_key(content_hash: str, chunk_index: int, signature: str) -> str:
    return f"r:{content_hash}:{chunk_index}:{signature}:{PIPELINE_VERSION}"


def media_key(content_hash: str) -> str:
    """What decoding told us about a file's content (dimensions, EXIF): lets a cache hit skip decoding."""
    return f"m:{content_hash}:{PIPELINE_VERSION}"


class ResultCache:
    """JSON values under string keys; reads may come from any thread (diskcache is thread-safe),
    writes go through one thread in batched transactions."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._executor = SerialExecutor("result-cache")
        self._cache: diskcache.Cache | None = None

    async def open(self) -> None:
        await self._executor.run(self._open)

    def _open(self) -> None:
        # eviction_policy none: results are the expensive part, never evicted behind our back.
        self._cache = diskcache.Cache(str(self._directory), eviction_policy="none", size_limit=2**40)

    @property
    def _store(self) -> diskcache.Cache:
        if self._cache is None:
            raise RuntimeError("ResultCache is not open")
        return self._cache

    def get_many_sync(self, keys: list[str]) -> dict[str, Any]:
        """Blocking look-up, for callers already in a worker thread (the prepare stage's file job)."""
        found: dict[str, Any] = {}
        for key in keys:
            raw = self._store.get(key)
            if raw is not None:
                found[key] = orjson.loads(raw)
        return found

    async def get_many(self, keys: list[str]) -> dict[str, Any]:
        return await self._executor.run(self.get_many_sync, keys)

    async def set_many(self, items: dict[str, Any]) -> None:
        if items:
            encoded = {key: orjson.dumps(value) for key, value in items.items()}
            await self._executor.run(self._set_many, encoded)

    def _set_many(self, items: dict[str, bytes]) -> None:
        with self._store.transact():
            for key, value in items.items():
                self._store.set(key, value)

    async def close(self) -> None:
        if self._cache is not None:
            await self._executor.run(self._cache.close)
            self._cache = None
        self._executor.shutdown()
