"""Liveness and readiness (ML service and vector store): open to probes, no API key (they say nothing
but up/down; /metrics, which says more, is in api/metrics.py behind the key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from orchestrator.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(services: ServicesDep, response: Response) -> dict[str, Any]:
    ml_ok = await services.ml.ready()
    try:
        await services.store.list_collections()
        store_ok = True
    except Exception:  # readiness reports the store's failure instead of raising it
        store_ok = False
    if not (ml_ok and store_ok):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {
        "ready": ml_ok and store_ok,
        "ml_service": ml_ok,
        "vector_store": store_ok,
        "ml_replicas": services.ml.replica_stats(),
    }
