"""Everything a Qdrant Edge store holds, read back for comparison: collection -> point id -> payload.

Read only after the process that wrote the store has ended (the engine holds the directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.clients.vectors_edge import EdgeVectorStore

# Payload fields that are clock readings (orchestrator/pipeline/records.py: when the point was written);
# every other field is a function of the tree, the models and the settings.
TIME_FIELDS = frozenset({"indexed_at"})
_PAGE = 512

Snapshot = dict[str, dict[str, dict[str, Any]]]


async def read_store(root: Path) -> Snapshot:
    """Every collection (companions included) with every point's payload, TIME_FIELDS left out. A point id
    met twice while scrolling fails."""
    store = EdgeVectorStore(root)
    try:
        snapshot: Snapshot = {}
        for name in await store.list_collections():
            points: dict[str, dict[str, Any]] = {}
            offset: str | None = None
            while True:
                page, offset = await store.scroll(name, None, _PAGE, offset)
                for point in page:
                    if point.id in points:
                        raise AssertionError(f"{name}: point {point.id} scrolled twice")
                    points[point.id] = {k: v for k, v in point.payload.items() if k not in TIME_FIELDS}
                if offset is None:
                    break
            snapshot[name] = points
        return snapshot
    finally:
        await store.close()
