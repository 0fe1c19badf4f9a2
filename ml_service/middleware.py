"""Request context: a request id on every log line and response, and one log line per request."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("ml_service.http")

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is echoed verbatim; longer values are cut so a client cannot bloat every log line.
_MAX_REQUEST_ID = 128
# Polled by supervisors and test helpers every few ms; logged at debug level only.
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


class RequestContextMiddleware:
    """Plain ASGI middleware (cheaper than BaseHTTPMiddleware, which adds a task per request)."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, int, float], None] | None = None) -> None:
        self.app = app
        self._observe = observe  # (path, status, seconds) per request: metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER.encode():
                request_id = value.decode("latin-1")[:_MAX_REQUEST_ID]
                break
        request_id = request_id or uuid.uuid4().hex
        status = 500  # stays 500 if the app fails before it starts a response
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path = scope.get("path", "")
                elapsed = time.perf_counter() - started
                if self._observe is not None:
                    self._observe(path, status, elapsed)
                emit = log.debug if path in _QUIET_PATHS else log.info
                emit(
                    "request",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
