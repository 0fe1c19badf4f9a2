"""The orchestrator's FastAPI app: `create_app(settings)` builds it; the lifespan owns every resource."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import Depends, FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api import (
    collections,
    events,
    health,
    jobs,
    media,
    metrics,
    people,
    roots,
    search,
    streams,
    uploads,
)
from orchestrator.api.deps import CollectionDeletions, require_api_key
from orchestrator.api.strict import reject_unknown_input
from orchestrator.api.web import add_web_ui
from orchestrator.clients.vectors import VectorStore
from orchestrator.config import Settings
from orchestrator.job_manager import JobManager
from orchestrator.job_store import JobStore
from orchestrator.logs import configure_logging, get_logger
from orchestrator.services import Services
from orchestrator.sources.intake import Intake

log = get_logger(__name__)


def create_app(settings: Settings, store: VectorStore | None = None) -> FastAPI:
    """Build the app. `store` lets a test hand in a real store of its own (e.g. an instrumented one)."""
    settings.check_exposure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.open(settings, store)
        job_store = JobStore(settings.jobs_db_path)
        await job_store.open()
        manager = JobManager(services, job_store)
        if settings.database_url:  # distributed: the jobs run on workers (imported only then)
            from orchestrator.distributed.jobs import open_cluster_jobs

            manager = await open_cluster_jobs(services, job_store)
        services.metrics.watch_jobs(manager.live)
        app.state.services = services
        app.state.jobs = manager
        app.state.intake = await Intake.open(settings)  # UPLOAD_DIR (api/uploads.py, sources/)
        resumed = await manager.restore()
        log.info(
            "orchestrator_ready", data_dir=str(settings.data_dir), ml=settings.ml_urls, resumed=len(resumed)
        )
        try:
            yield
        finally:
            await manager.shutdown()
            await job_store.close()
            await services.close()

    app = FastAPI(
        title="Archivist orchestrator",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.max_request_bytes,  # 413 beyond it, also for a chunked body
        dependencies=[
            Depends(reject_unknown_input)
        ],  # 422: a query parameter or body the route does not take
    )
    app.state.settings = settings
    app.state.deletions = CollectionDeletions()
    app.state.event_streams = events.EventStreams()
    app.add_middleware(_RequestIds)
    hosts = settings.trusted_host_list
    if hosts != ["*"]:  # outermost: a rebound Host is refused before anything else runs
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)
    app.include_router(health.router)
    protected = [Depends(require_api_key)]
    routers = (
        jobs.router,
        roots.router,
        search.router,
        media.router,
        collections.router,
        people.router,
        metrics.router,
        streams.router,
    )
    for router in routers:
        app.include_router(router, dependencies=protected)
    # Uploads stream their bodies to disk: bounded by MAX_UPLOAD_BYTES instead of MAX_REQUEST_BYTES.
    upload_limit = settings.max_upload_bytes + uploads.FORM_OVERHEAD
    app.include_router(uploads.router, dependencies=protected, max_body_size=upload_limit)
    app.include_router(events.router)  # SSE depends on the key per route; the WebSocket checks it itself
    add_web_ui(app)  # the page and its assets: no key (they hold no data; the page sends the key)
    return app


class _RequestIds:
    """Bind a request id to every log line of the request and echo it (followed into the ML service); log
    the request when its response starts. A plain ASGI middleware: Starlette's BaseHTTPMiddleware hands every
    body message through a task group of its own, which cost a 200 MB upload ~20 % of its speed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["x-request-id"] = request_id
                quiet = scope["path"] in ("/health", "/ready", "/metrics")
                (log.debug if quiet else log.info)(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=message["status"],
                    ms=round((time.perf_counter() - started) * 1000, 2),
                )
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


def main() -> None:
    """`python -m orchestrator`: serve with settings from the environment."""
    import uvicorn

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    # Our middleware logs each request as JSON with its request id; uvicorn's plain access log would not.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False
    )
