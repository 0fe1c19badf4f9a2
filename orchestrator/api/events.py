"""Live progress: Server-Sent Events and a WebSocket, one event schema, throttled.

An event is sent when the job's status changed, at most every EVENT_INTERVAL_S, and once more at the end;
the stream closes after the job reaches a terminal state.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, WebSocket, WebSocketDisconnect, status
from fastapi.responses import StreamingResponse

from orchestrator.api.deps import JobsDep, require_api_key
from orchestrator.job_manager import JobManager
from orchestrator.jobs import Job, JobNotFoundError

router = APIRouter(tags=["events"])

# Often enough for a progress bar, rarely enough that a thousand watchers cost nothing.
EVENT_INTERVAL_S = 0.5
# SSE comment lines keep proxies from closing an idle stream.
HEARTBEAT_S = 15.0
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


def event_of(job: Job) -> dict[str, Any]:
    """The event schema shared by SSE and WebSocket: a subset of GET /jobs/{id}."""
    status_ = job.status(max_errors=0)
    return {
        "type": "progress" if job.active else "end",
        "job_id": job.id,
        **{k: status_.get(k) for k in _EVENT_FIELDS},
    }


async def job_events(job: Job) -> AsyncIterator[dict[str, Any] | None]:
    """Events as the job changes; None after HEARTBEAT_S without a change (a stream keep-alive)."""
    last: dict[str, Any] | None = None
    last_sent = time.monotonic()
    while True:
        event = event_of(job)
        comparable = {k: v for k, v in event.items() if k not in ("elapsed_s", "files_per_s", "bytes_per_s")}
        if comparable != last:
            last = comparable
            last_sent = time.monotonic()
            yield event
        elif time.monotonic() - last_sent > HEARTBEAT_S:
            last_sent = time.monotonic()
            yield None
        if not job.active:
            return
        await asyncio.sleep(EVENT_INTERVAL_S)


def _job(jobs: JobManager, job_id: str) -> Job:
    try:
        return jobs.get(job_id)
    except JobNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}") from exc


@router.get("/jobs/{job_id}/events", dependencies=[Depends(require_api_key)])
async def sse(job_id: str, jobs: JobsDep) -> StreamingResponse:
    job = _job(jobs, job_id)

    async def stream() -> AsyncIterator[bytes]:
        async for event in job_events(job):
            if event is None:
                yield b": keep-alive\n\n"
            else:
                yield b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


@router.websocket("/jobs/{job_id}/ws")
async def websocket(ws: WebSocket, job_id: str) -> None:
    expected = ws.app.state.settings.api_key
    given = ws.headers.get("x-api-key") or ws.query_params.get("api_key")
    if expected and (given is None or not secrets.compare_digest(given.encode(), expected.encode())):
        await ws.close(code=4401, reason="missing or wrong API key")
        return
    jobs: JobManager = ws.app.state.jobs
    try:
        job = jobs.get(job_id)
    except JobNotFoundError:
        await ws.close(code=4404, reason=f"no job {job_id}")
        return
    await ws.accept()
    try:
        async for event in job_events(job):
            if event is not None:
                await ws.send_text(orjson.dumps(event).decode())
        await ws.close()
    except WebSocketDisconnect:
        return
