"""Live streams: POST /streams (record an rtsp:// or HLS stream and ingest it as its segments close),
GET /streams, GET /streams/{id} (health), DELETE /streams/{id} or POST …/cancel (stop), POST …/pause and
…/resume. A stream is a job of kind "stream" (its id is the job's): GET /jobs/{id} and its events work too.
How it records: orchestrator/sources/streams.py.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request, status

from orchestrator.api.access import PrincipalDep, can_read, check_write, readable_job, transition
from orchestrator.api.deps import DeletionsDep, JobsDep, ServicesDep
from orchestrator.api.schemas import StreamAccepted, StreamCreate
from orchestrator.job_manager import JobManager
from orchestrator.jobs import STREAM, Job
from orchestrator.services import Services
from orchestrator.sources.managed import new_id
from orchestrator.sources.stream_status import Connection
from orchestrator.sources.stream_urls import StreamURLError, host_refusal, parse_stream_url
from orchestrator.sources.streams import save_url, stream_directory
from orchestrator.tenancy import Principal

router = APIRouter(tags=["streams"])


def stream_view(job: Job, request: Request) -> dict[str, Any]:
    """A stream's health: its connection, segments, reconnects, last error, lag (`StreamStatus`)."""
    health = job.stream.to_json()
    if not job.active:
        health["state"] = Connection.STOPPED.value
    health["url"] = str(job.options.get("url", ""))
    return {
        "stream_id": job.id,
        "job_id": job.id,
        "collection": job.collection,
        "job_state": job.state.value,
        "error": job.error,
        "retention_hours": job.options.get("retention_hours"),
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        **health,
        "status_url": str(request.url_for("stream_status", stream_id=job.id)),
    }


@router.post("/streams", status_code=status.HTTP_202_ACCEPTED, response_model=StreamAccepted)
async def create_stream(
    body: StreamCreate,
    request: Request,
    services: ServicesDep,
    jobs: JobsDep,
    deletions: DeletionsDep,
    who: PrincipalDep,
    idempotency_key: str | None = Header(default=None),
) -> StreamAccepted:
    settings = services.settings
    try:
        target = parse_stream_url(body.url)
    except StreamURLError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    refusal = await host_refusal(target, settings.url_allowed_network_list)
    if refusal is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, refusal)
    name = body.collection or settings.default_collection
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is being deleted")
    await check_write(who, services, name)
    directory = stream_directory(settings.upload_root, name, new_id())
    await asyncio.to_thread(save_url, directory, body.url)
    options = {"kind": STREAM, "url": target.public, **body.options.as_job_options()}
    try:
        job = await jobs.submit(directory, name, options, idempotency_key)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
        raise
    if job.root != directory:  # an Idempotency-Key seen before: the stream it created answers
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
    return StreamAccepted(
        job_id=job.id,
        stream_id=job.id,
        state=job.state.value,
        url=str(job.options.get("url", "")),
        status_url=str(request.url_for("stream_status", stream_id=job.id)),
    )


@router.get("/streams")
async def list_streams(
    request: Request, jobs: JobsDep, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    streams = [job for job in await jobs.all() if job.streams]
    return {
        "streams": [stream_view(j, request) for j in streams if await can_read(services, who, j.collection)]
    }


async def _get(jobs: JobManager, stream_id: str, services: Services, who: Principal) -> Job:
    """The stream, when `who` may read its collection (another tenant's does not exist for it)."""
    job = await readable_job(jobs, stream_id, services, who)
    if job is None or not job.streams:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no stream {stream_id}")
    return job


@router.get("/streams/{stream_id}", name="stream_status")
async def stream_status(
    stream_id: str, request: Request, jobs: JobsDep, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return stream_view(await _get(jobs, stream_id, services, who), request)


async def _transition(
    jobs: JobManager,
    stream_id: str,
    request: Request,
    action: Callable[[str], Awaitable[Job]],
    services: Services,
    who: Principal,
) -> dict[str, Any]:
    await _get(jobs, stream_id, services, who)
    return stream_view(await transition(action, stream_id), request)


@router.delete("/streams/{stream_id}")
async def delete_stream(
    stream_id: str, request: Request, jobs: JobsDep, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    """Stop recording (what was recorded stays searchable). A stream already stopped is answered as is."""
    job = await _get(jobs, stream_id, services, who)
    if not job.active:
        return stream_view(job, request)
    return await _transition(jobs, stream_id, request, jobs.cancel, services, who)


@router.post("/streams/{stream_id}/cancel")
async def cancel_stream(
    stream_id: str, request: Request, jobs: JobsDep, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return await _transition(jobs, stream_id, request, jobs.cancel, services, who)


@router.post("/streams/{stream_id}/pause")
async def pause_stream(
    stream_id: str, request: Request, jobs: JobsDep, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    """Its passes wait; the recorder goes on into the bounded buffer (the oldest segments beyond it are
    dropped)."""
    return await _transition(jobs, stream_id, request, jobs.pause, services, who)


@router.post("/streams/{stream_id}/resume")
async def resume_stream(
    stream_id: str, request: Request, jobs: JobsDep, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return await _transition(jobs, stream_id, request, jobs.resume, services, who)
