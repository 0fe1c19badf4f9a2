"""Routes for collections: list them with their sizes, delete one (points, faces and voices, file index).

A collection's companions (`<name>_faces`, `<name>_voices`) are listed with it, not as collections."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from orchestrator.api.deps import ServicesDep
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
async def delete_collection(name: str, services: ServicesDep) -> dict[str, Any]:
    if name not in await services.store.list_collections():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    await services.store.delete_collection(name)
    for companion in companions(name):
        if await services.store.collection_exists(companion):
            await services.store.delete_collection(companion)
    await services.index.drop_collection(name)
    return {"deleted": name}
