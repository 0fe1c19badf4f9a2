"""Shared/exclusive locks per collection, for the jobs of one process (aiorwlock's RWLock, one per name).

Ingest jobs share a collection (several roots at once); a re-analysis or rebuild takes it alone, so no
ingest writes into a version while it is re-analysed or replaced, and two jobs never build two versions.
A waiting exclusive holder goes first: shared holders that come after it wait behind it (aiorwlock lets
readers yield to waiting writers), so a steady stream of ingests cannot starve an upgrade.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiorwlock


class CollectionLocks:
    def __init__(self) -> None:
        # One small lock per collection name a job of this process touched (as many as collections).
        self._locks: dict[str, aiorwlock.RWLock] = {}

    def _lock(self, name: str) -> aiorwlock.RWLock:
        return self._locks.setdefault(name, aiorwlock.RWLock())

    @asynccontextmanager
    async def shared(self, name: str) -> AsyncIterator[None]:
        async with self._lock(name).reader_lock:
            yield

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        async with self._lock(name).writer_lock:
            yield

    def busy(self, name: str) -> bool:
        """Some job holds the collection (shared or alone)."""
        lock = self._locks.get(name)
        return lock is not None and (lock.reader_lock.locked or lock.writer_lock.locked)
