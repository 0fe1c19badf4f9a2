"""API-key authentication (ML_API_KEY), the orchestrator's scheme: ``X-API-Key: <key>`` or
``Authorization: Bearer <key>``, compared in constant time. Liveness and readiness stay open to probes."""

from __future__ import annotations

import secrets

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_service.schemas import error_response

# Supervisors and the orchestrator's replica checks poll these without credentials.
OPEN_PATHS = frozenset({"/health", "/ready"})


def given_key(headers: Headers) -> str | None:
    """The key a request presents: ``X-API-Key``, else a bearer token; None when it presents none."""
    key = headers.get("x-api-key")
    if key is not None:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class ApiKeyMiddleware:
    """Plain ASGI middleware: every HTTP route but ``OPEN_PATHS`` answers 401 without the right key."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        if not api_key:
            raise ValueError("an empty API key would let everyone in")
        self.app = app
        self._expected = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = given_key(Headers(scope=scope))
        if given is None or not secrets.compare_digest(given.encode(), self._expected):
            refusal = error_response(
                401,
                "missing or wrong API key (X-API-Key or Authorization: Bearer)",
                headers={"WWW-Authenticate": "Bearer"},
                code="unauthorized",
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)
