"""FastAPI dependencies: the process's services and job manager, and API-key authentication."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import HTTPConnection

from orchestrator.api.signing import signed
from orchestrator.config import Settings
from orchestrator.job_manager import JobManager
from orchestrator.people import companions
from orchestrator.services import Services
from orchestrator.tenancy import OPERATOR, Principal


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


def principal_of(conn: HTTPConnection) -> Principal | None:
    """Who the request is (tenancy.py); None when it needs a key and carries no valid one. Without API_KEY
    and TENANT_KEYS everyone is the operator. A key comes as X-API-Key, Authorization: Bearer, or (for a
    browser's WebSocket, which cannot set headers) the `api_key` query parameter; a thumbnail or stream URL
    from a search answer carries a signature instead (api/signing.py), good for that one path and
    collection only (whoever it was made for could read it)."""
    settings: Settings = conn.app.state.settings
    tenants = settings.tenants
    if not settings.api_key and not tenants:
        return OPERATOR
    given = conn.headers.get("x-api-key")
    auth = conn.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None and conn.scope["type"] == "websocket":
        given = conn.query_params.get("api_key")
    if given is None:
        signing_key = settings.signing_key
        return OPERATOR if signing_key and signed(conn, signing_key) else None
    operator = bool(settings.api_key) and secrets.compare_digest(
        given.encode(), (settings.api_key or "").encode()
    )
    tenant = tenants.tenant_for(given)
    if operator:
        return OPERATOR
    return Principal(tenant) if tenant is not None else None


def has_api_key(conn: HTTPConnection) -> bool:
    return principal_of(conn) is not None


def require_api_key(request: Request) -> None:
    """With API_KEY or TENANT_KEYS set, every route except liveness and readiness needs a key (X-API-Key
    or Bearer); who it is stays on the request for the routes' collection checks (api/access.py)."""
    principal = principal_of(request)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong API key")
    request.state.principal = principal


ServicesDep = Annotated[Services, Depends(get_services)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
DeletionsDep = Annotated[CollectionDeletions, Depends(get_deletions)]
