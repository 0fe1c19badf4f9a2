"""Routes for collections: list them with their sizes, delete one (points and file index)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from orchestrator.api.deps import ServicesDep

router = APIRouter(tags=["collections"])


@router.get("/collections")
async def collections(services: ServicesDep) -> dict[str, Any]:
    names = await services.store.list_collections()
    return {"collections": [{"name": n, "points": await services.store.count(n)} for n in names]}


@router.delete("/collections/{name}")
async def delete_collection(name: str, services: ServicesDep) -> dict[str, Any]:
    if name not in await services.store.list_collections():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    await services.store.delete_collection(name)
    await services.index.drop_collection(name)
    return {"deleted": name}
