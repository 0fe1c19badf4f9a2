"""Live progress: Server-Sent Events (sse-starlette) and a WebSocket, one event producer, throttled.

An event is sent when the job's status changed, at most every EVENT_INTERVAL_S, and once more at the end;
the stream closes after the job reaches a terminal state. A client that goes away stops its producer (SSE:
sse-starlette sees the disconnect and cancels the stream; WebSocket: the next send fails).

WebSocket close codes (sent after the handshake, so a browser sees them): 4401 missing or wrong API key,
4404 no such job, 1000 the job ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, WebSocket, WebSocketDisconnect, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import HTTPConnection

from orchestrator.api.access import PrincipalDep, readable_job
from orchestrator.api.deps import JobsDep, ServicesDep, principal_of, require_api_key
from orchestrator.job_manager import JobManager
from orchestrator.jobs import Job
from orchestrator.services import Services
from orchestrator.tenancy import Principal

router = APIRouter(tags=["events"])

# Often enough for a progress bar, rarely enough that a thousand watchers cost nothing.
EVENT_INTERVAL_S = 0.5
# SSE comment lines keep proxies from closing an idle stream.
HEARTBEAT_S = 15.0
WS_UNAUTHORIZED = 4401
WS_NO_SUCH_JOB = 4404
_EVENT_FIELDS = (
    "state",
    "counters",
    "stages",
    "queue_depths",
    "batch_sizes",
    "files_per_s",
    "bytes_per_s",
    "eta_s",
    "elapsed_s",
    "scan_complete",
    "waiting_for",
    "error",
)


@dataclass(slots=True)
class EventStreams:
    """How many event producers run now (one per connected SSE or WebSocket client)."""

    active: int = 0


def event_of(job: Job) -> dict[str, Any]:
    """The event schema shared by SSE and WebSocket: a subset of GET /jobs/{id}."""
    status_ = job.status(max_errors=0)
    return {
        "type": "progress" if job.active else "end",
        "job_id": job.id,
        **{k: status_.get(k) for k in _EVENT_FIELDS},
    }


async def job_events(job: Job, streams: EventStreams) -> AsyncGenerator[dict[str, Any], None]:
    """The one producer: events as the job changes, until it ends or its consumer is gone."""
    streams.active += 1
    try:
        last: dict[str, Any] | None = None
        while True:
            event = event_of(job)
            comparable = {
                k: v for k, v in event.items() if k not in ("elapsed_s", "files_per_s", "bytes_per_s")
            }
            if comparable != last:
                last = comparable
                yield event
            if not job.active:
                return
            await asyncio.sleep(EVENT_INTERVAL_S)
    finally:
        streams.active -= 1


async def _job(jobs: JobManager, job_id: str, services: Services, who: Principal) -> Job:
    """The job, when `who` may read its collection (another tenant's job does not exist for it)."""
    job = await readable_job(jobs, job_id, services, who)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


def get_streams(conn: HTTPConnection) -> EventStreams:
    streams: EventStreams = conn.app.state.event_streams
    return streams


StreamsDep = Annotated[EventStreams, Depends(get_streams)]


@router.get("/jobs/{job_id}/events", dependencies=[Depends(require_api_key)])
async def sse(
    job_id: str, jobs: JobsDep, streams: StreamsDep, services: ServicesDep, who: PrincipalDep
) -> EventSourceResponse:
    """`event: progress|end`, `data: <the event as JSON>`; a comment line every HEARTBEAT_S."""
    job = await _job(jobs, job_id, services, who)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async with aclosing(job_events(job, streams)) as events:
            async for event in events:
                yield ServerSentEvent(data=orjson.dumps(event).decode(), event=event["type"])

    return EventSourceResponse(stream(), ping=HEARTBEAT_S)


@router.websocket("/jobs/{job_id}/ws")
async def websocket(
    ws: WebSocket,
    job_id: str,
    streams: StreamsDep,
    api_key: str | None = Query(default=None, description="For browsers, which cannot send headers"),
) -> None:
    """The same events as text frames. The key: X-API-Key, Authorization: Bearer, or `?api_key=`."""
    del api_key  # read by has_api_key; declared so that it is a known query parameter
    await ws.accept()  # before any close, or the client would see a bare HTTP 403 instead of the code
    who = principal_of(ws)
    if who is None:
        await ws.close(code=WS_UNAUTHORIZED, reason="missing or wrong API key")
        return
    jobs: JobManager = ws.app.state.jobs
    job = await readable_job(jobs, job_id, ws.app.state.services, who)
    if job is None:
        await ws.close(code=WS_NO_SUCH_JOB, reason=f"no job {job_id}")
        return
    ended = False
    async with anyio.create_task_group() as group:

        async def until_disconnect() -> None:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass  # messages from the client mean nothing here
            group.cancel_scope.cancel()

        group.start_soon(until_disconnect)
        try:
            async with aclosing(job_events(job, streams)) as events:
                async for event in events:
                    await ws.send_text(orjson.dumps(event).decode())
            ended = True
        except WebSocketDisconnect:
            pass
        group.cancel_scope.cancel()
    if ended:
        await ws.close()
