"""The allowed roots (ALLOWED_ROOTS, resolved): where a job may ingest from. The web UI offers them as the
start of a job's path. Behind the API key like every data route: they name the host's folders."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from orchestrator.api.deps import ServicesDep

router = APIRouter(tags=["jobs"])


@router.get("/roots")
async def roots(services: ServicesDep) -> dict[str, list[str]]:
    """`{"roots": [absolute path, …]}`, in the order ALLOWED_ROOTS names them."""
    settings = services.settings
    paths = await asyncio.to_thread(lambda: settings.allowed_root_paths)  # resolve() reads the disk
    return {"roots": [str(p) for p in paths]}
