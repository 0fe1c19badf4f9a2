"""Point maintenance: taking paths off the points of a content, and deleting the points (and their faces
and voices) of a content no indexed path holds any more.

Two callers: the upsert stage, for paths whose content changed (the releases a batch owes, recorded in the
file index in the same transaction as its done marks), and pruning, for files gone from the tree. Both go
store first, then index, so a crash between the two only repeats idempotent work.
"""

from __future__ import annotations

import os
from typing import Any

from orchestrator.clients.vectors import VectorStore
from orchestrator.file_index import FileIndex, Release
from orchestrator.ids import point_id
from orchestrator.logs import get_logger
from orchestrator.people import PeopleIndex

log = get_logger(__name__)


def ancestor_dirs(paths: list[str]) -> list[str]:
    """Every directory above the paths: a keyword match on one of them is a path-prefix filter."""
    dirs: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent and parent not in dirs:
            dirs.add(parent)
            up = os.path.dirname(parent)
            if up == parent:
                break
            parent = up
    return sorted(dirs)


# A point lists at most this many of its content's paths (the first in sort order). The file index holds
# every path and search answers with all of them; an unbounded list made the engine's memory grow with
# every copy (bench_reingest: 1k contents x 100 copies).
MAX_PAYLOAD_PATHS = 16


def path_fields(paths: list[str] | set[str]) -> dict[str, Any]:
    """`path`, `paths` (capped) and `dirs` (every ancestor of those paths: the path-prefix filter)."""
    ordered = sorted(set(paths))[:MAX_PAYLOAD_PATHS]
    return {"path": ordered[0] if ordered else None, "paths": ordered, "dirs": ancestor_dirs(ordered)}


class PointKeeper:
    def __init__(self, store: VectorStore, index: FileIndex, people: PeopleIndex, collection: str) -> None:
        self._store = store
        self._index = index
        self._people = people
        self._collection = collection

    async def release(self, gone: dict[str, tuple[int, set[str]]]) -> None:
        """Remove paths from the points of the given contents (hash -> (chunks, paths)); delete the points
        of a content no other indexed path holds. Idempotent. The index may still list the removed paths."""
        if not gone:
            return
        delete: list[str] = []
        deleted: list[str] = []
        updates = {}
        held = await self._index.paths_of(self._collection, list(gone))
        for content_hash, (chunks, paths) in gone.items():
            ids = [point_id(content_hash, i) for i in range(chunks)]
            remaining = [p for p in held.get(content_hash, []) if p not in paths]
            if not remaining:
                delete.extend(ids)
                deleted.append(content_hash)
                continue
            for pid in ids:
                updates[pid] = path_fields(remaining)
        await self._people.forget(deleted)  # faces and voices first: a crash leaves points to retry from
        await self._store.delete(self._collection, delete)
        await self._store.set_payloads(self._collection, updates)

    async def pay(self, owed: list[Release]) -> None:
        """Release paths from their old contents' points (idempotent), then clear the recorded debt."""
        gone: dict[str, tuple[int, set[str]]] = {}
        for content_hash, chunks, path in owed:
            gone.setdefault(content_hash, (chunks, set()))[1].add(path)
        await self.release(gone)
        await self._index.released(self._collection, owed)

    async def pay_recorded(self) -> int:
        """Pay the releases a crash or a store error left recorded for this collection. Returns how many."""
        paid = 0
        while owed := await self._index.pending_releases(self._collection):
            await self.pay(owed)
            paid += len(owed)
        if paid:
            log.info("releases_finished", collection=self._collection, paths=paid)
        return paid
