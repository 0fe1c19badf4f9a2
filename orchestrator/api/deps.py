"""FastAPI dependencies: the process's services and job manager, and API-key authentication."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from orchestrator.job_manager import JobManager
from orchestrator.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_jobs(request: Request) -> JobManager:
    jobs: JobManager = request.app.state.jobs
    return jobs


def require_api_key(request: Request) -> None:
    """When API_KEY is set, every route except liveness needs it (X-API-Key or Bearer)."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong API key")


ServicesDep = Annotated[Services, Depends(get_services)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
