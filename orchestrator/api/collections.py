"""Routes for collections: list them with their sizes, delete one (points, faces and voices, file index).

A collection's companions (`<name>_faces`, `<name>_voices`) are listed with it, not as collections.
A collection an active job writes to cannot be deleted (409): the job would leave file-index rows behind
that make the next ingest skip files whose points are gone. Cancel the job first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from orchestrator.api.deps import DeletionsDep, JobsDep, ServicesDep, same_data
from orchestrator.people import FACE_SUFFIX, VOICE_SUFFIX, companions, is_companion

router = APIRouter(tags=["collections"])


@router.get("/collections")
async def collections(services: ServicesDep) -> dict[str, Any]:
    names = set(await services.store.list_collections())
    out = []
    for n in sorted(names):
        if is_companion(n) and n.rsplit("_", 1)[0] in names:
            continue
        entry: dict[str, Any] = {"name": n, "points": await services.store.count(n)}
        for key, suffix in (("faces", FACE_SUFFIX), ("voices", VOICE_SUFFIX)):
            if f"{n}{suffix}" in names:
                entry[key] = await services.store.count(f"{n}{suffix}")
        out.append(entry)
    return {"collections": out}


@router.delete("/collections/{name}")
async def delete_collection(
    name: str, services: ServicesDep, jobs: JobsDep, deletions: DeletionsDep
) -> dict[str, Any]:
    if name not in await services.store.list_collections():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    writers = [j.id for j in jobs.live() if j.active and same_data(name, j.collection)]
    if writers:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {
                "detail": f"collection {name} is being written by active jobs; cancel them first",
                "jobs": writers,
            },
        )
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is already being deleted")
    deletions.names.add(name)  # no job for it starts until the points and the index rows are gone
    try:
        await services.store.delete_collection(name)
        for companion in companions(name):
            if await services.store.collection_exists(companion):
                await services.store.delete_collection(companion)
        await services.index.drop_collection(name)
    finally:
        deletions.names.discard(name)
    return {"deleted": name}
