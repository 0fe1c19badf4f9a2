"""Result cache (diskcache): each task's ML answers, keyed per task and per model version.

- `task_key`: one task's raw answers for one chunk (per keyframe for image tasks), keyed by the content
  hash, the chunk plan (the settings that cut and sample the file: a new plan never reuses a result by
  chunk index), the chunk, the task, that task's model (name@version) and the pipeline version. A new OCR
  model misses on OCR only; every other task's answers are reused.
- `text_key`: a text vector, keyed by the text model and a digest of the text it embeds: a new OCR result
  changes the text, so only those chunks are embedded again.
- `media_key`: what decoding told us (dimensions, EXIF, the chunk spans) per content and plan.

A file seen under another path or in another collection reuses what is cached under its hash. Writes are
batched in one transaction (docs/performance-limits.md: ~11k sets/s in transactions vs ~3k autocommitted).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import diskcache
import orjson

from orchestrator.ids import PIPELINE_VERSION
from orchestrator.serial import SerialExecutor


def digest(text: str, size: int = 8) -> str:
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def task_key(content_hash: str, plan: str, chunk_index: int, task: str, model: str) -> str:
    """One task's answers for one chunk: `model` is the task's "name@version", `plan` the chunk plan's
    digest."""
    return f"t:{content_hash}:{plan}:{chunk_index}:{task}:{digest(model)}:{PIPELINE_VERSION}"


def text_key(model: str, text: str) -> str:
    """A text vector: the text model's "name@version" and the text itself (digested)."""
    return f"x:{digest(model)}:{digest(text, 16)}"


def media_key(content_hash: str, plan: str) -> str:
    """What decoding told us about a file's content under one chunk plan (dimensions, EXIF, chunk spans):
    lets a cache hit skip decoding."""
    return f"m:{content_hash}:{plan}:{PIPELINE_VERSION}"


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

    def has_all_sync(self, keys: list[str]) -> bool:
        """Blocking: whether every key is cached (no value is read), for callers in a worker thread."""
        store = self._store
        return all(key in store for key in keys)

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
