"""Prometheus metrics. Behind API_KEY like every route but /health and /ready: job counters, error classes
and ML latencies describe the archive's activity. Prometheus sends the key as a bearer token
(`authorization: {credentials: <API_KEY>}` in its scrape config). A tenant's key is refused (403): the
numbers are the whole service's."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.api.access import require_operator
from orchestrator.api.deps import ServicesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", dependencies=[Depends(require_operator)])
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text format: stage throughput, queue depths, ML latency and batch sizes, errors."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
