"""FastAPI dependencies: the process's services and job manager, and API-key authentication."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import HTTPConnection

from orchestrator.api.signing import signed
from orchestrator.job_manager import JobManager
from orchestrator.people import companions
from orchestrator.services import Services


def same_data(a: str, b: str) -> bool:
    """True when a job on one collection writes to the other (itself or a faces/voices companion)."""
    return a == b or a in companions(b) or b in companions(a)


@dataclass(slots=True)
class CollectionDeletions:
    """Collections being deleted right now: a job for one of them is refused (409) until it is gone."""

    names: set[str] = field(default_factory=set)

    def blocks(self, collection: str) -> bool:
        return any(same_data(collection, name) for name in self.names)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_jobs(request: Request) -> JobManager:
    jobs: JobManager = request.app.state.jobs
    return jobs


def get_deletions(request: Request) -> CollectionDeletions:
    deletions: CollectionDeletions = request.app.state.deletions
    return deletions


def has_api_key(conn: HTTPConnection) -> bool:
    """True when API_KEY is unset, or the request carries it: X-API-Key, Authorization: Bearer, or (for a
    browser's WebSocket, which cannot set headers) the `api_key` query parameter; or, for a thumbnail or
    stream, a signed URL (api/signing.py)."""
    expected: str | None = conn.app.state.settings.api_key
    if not expected:
        return True
    given = conn.headers.get("x-api-key")
    auth = conn.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None and conn.scope["type"] == "websocket":
        given = conn.query_params.get("api_key")
    if given is None:  # a thumbnail or stream URL from a search answer, signed with the key (signing.py)
        return signed(conn, expected)
    return secrets.compare_digest(given.encode(), expected.encode())


def require_api_key(request: Request) -> None:
    """When API_KEY is set, every route except liveness and readiness needs it (X-API-Key or Bearer)."""
    if not has_api_key(request):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong API key")


ServicesDep = Annotated[Services, Depends(get_services)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
DeletionsDep = Annotated[CollectionDeletions, Depends(get_deletions)]
