"""Rewriting the people fields of chunk points after clusters merged, links changed or users edited people.

A chunk point holds its faces' and turns' clusters; its people fields (`identities.people_fields`) are
derived from them. Only the points that hold one of the given clusters are read (the `clusters` keyword
index), and only those whose fields change are written, `PAGE` at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.clients.vectors import SearchFilter, VectorStore
from orchestrator.file_index import slices
from orchestrator.identities import Identities, changed_people

PAGE = 512


def renamed_clusters(payload: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """A chunk payload with its faces' and turns' clusters renamed (a job's cluster merge)."""

    def rename(c: object) -> object:
        return renames.get(c, c) if isinstance(c, str) else c

    faces = [{**f, "cluster": rename(f.get("cluster"))} for f in payload.get("faces") or []]
    speakers = [
        {
            **t,
            "voice": rename(t.get("voice")),
            "on_screen": sorted({str(rename(c)) for c in t.get("on_screen") or []}),
        }
        for t in payload.get("speakers") or []
    ]
    return {**payload, "faces": faces, "speakers": speakers}


async def sync_people(
    store: VectorStore,
    collection: str,
    ids: Identities,
    clusters: Sequence[str],
    renames: dict[str, str] | None = None,
) -> int:
    """Rewrite the chunks holding any of `clusters` (their names before `renames`); the number written."""
    if not clusters or not await store.collection_exists(collection):
        return 0
    written = 0
    for part in slices(sorted(set(clusters))):
        offset: str | None = None
        while True:
            points, offset = await store.scroll(
                collection, SearchFilter(match={"clusters": part}), PAGE, offset
            )
            updates: dict[str, dict[str, Any]] = {}
            for p in points:
                payload = renamed_clusters(p.payload, renames) if renames else p.payload
                fields = changed_people(payload, ids)
                if fields is not None:
                    updates[p.id] = fields
                elif renames:
                    updates[p.id] = {k: payload[k] for k in ("faces", "speakers")}
            if updates:
                await store.set_payloads(collection, updates)
                written += len(updates)
            if offset is None:
                break
    return written
