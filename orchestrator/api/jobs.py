"""Routes for jobs: create (and the seed's /ingest alias), list, status, pause/resume/cancel, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status

from orchestrator.api.access import PrincipalDep, can_read, check_write, readable_job, transition
from orchestrator.api.deps import CollectionDeletions, DeletionsDep, JobsDep, ServicesDep
from orchestrator.api.schemas import IngestAlias, JobAccepted, JobCreate, JobOptions
from orchestrator.job_manager import JobManager
from orchestrator.jobs import Job
from orchestrator.security import PathInvalidError, PathNotAllowedError, resolve_ingest_root, resolve_s3_root
from orchestrator.services import Services
from orchestrator.sources.roots import Root, is_s3_uri
from orchestrator.sources.text import write_text
from orchestrator.tenancy import Principal

router = APIRouter(tags=["jobs"])


def accepted(job: Job, request: Request) -> JobAccepted:
    return JobAccepted(
        job_id=job.id, state=job.state.value, status_url=str(request.url_for("job_status", job_id=job.id))
    )


async def _submit(
    services: ServicesDep,
    jobs: JobManager,
    deletions: CollectionDeletions,
    path: str,
    collection: str | None,
    options: JobOptions,
    who: Principal,
    idempotency_key: str | None = None,
) -> Job:
    settings = services.settings
    root: Root
    try:
        if is_s3_uri(path):  # an object-store prefix (sources/roots.py), its bucket in S3_ALLOWED_BUCKETS
            root = resolve_s3_root(path, settings.s3_allowed_bucket_set)
            if options.watch:
                raise PathInvalidError("watch needs a local folder: an s3:// prefix is ingested by each job")
        else:
            root = resolve_ingest_root(path, settings.allowed_root_paths, settings.managed_root_paths)
    except PathNotAllowedError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except PathInvalidError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    name = collection or services.settings.default_collection
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is being deleted")
    await check_write(who, services, name)
    return await jobs.submit(root, name, options.as_job_options(), idempotency_key)


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
async def create_job(
    body: JobCreate,
    request: Request,
    services: ServicesDep,
    jobs: JobsDep,
    deletions: DeletionsDep,
    who: PrincipalDep,
    idempotency_key: str | None = Header(default=None),
) -> JobAccepted:
    if body.path is not None:
        job = await _submit(
            services, jobs, deletions, body.path, body.collection, body.options, who, idempotency_key
        )
    else:
        job = await _submit_managed(request, services, jobs, deletions, body, who, idempotency_key)
    return accepted(job, request)


async def _submit_managed(
    request: Request,
    services: ServicesDep,
    jobs: JobManager,
    deletions: CollectionDeletions,
    body: JobCreate,
    who: Principal,
    idempotency_key: str | None,
) -> Job:
    """A URL or text job: a new directory under UPLOAD_DIR that the job fills (a URL: its first phase,
    `sources/url_job.py`) or that holds the text already, then ingests."""
    name = body.collection or services.settings.default_collection
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is being deleted")
    await check_write(who, services, name)
    area = request.app.state.intake.area
    directory = await asyncio.to_thread(area.new_directory, name)
    options = body.options.as_job_options()
    try:
        if body.text is not None:
            await asyncio.to_thread(write_text, directory, body.title, body.text)
            options["source"] = "text"
        else:
            options.update(source="url", url=body.url)
        job = await jobs.submit(directory, name, options, idempotency_key)
    except BaseException:
        await asyncio.to_thread(area.remove, directory)
        raise
    if job.root != directory:  # an Idempotency-Key seen before: the job it created answers
        await asyncio.to_thread(area.remove, directory)
    return job


@router.post("/ingest", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
async def ingest_alias(
    body: IngestAlias,
    request: Request,
    services: ServicesDep,
    jobs: JobsDep,
    deletions: DeletionsDep,
    who: PrincipalDep,
) -> JobAccepted:
    job = await _submit(services, jobs, deletions, body.directory_path, body.collection, body.options, who)
    return accepted(job, request)


@router.get("/jobs")
async def list_jobs(jobs: JobsDep, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    every = await jobs.all()
    mine = [job for job in every if await can_read(services, who, job.collection)]
    return {"jobs": [job.status(max_errors=3) for job in mine]}


async def _get(jobs: JobManager, job_id: str, services: Services, who: Principal) -> Job:
    """The job, when `who` may read its collection (another tenant's job does not exist for it)."""
    job = await readable_job(jobs, job_id, services, who)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


@router.get("/jobs/{job_id}", name="job_status")
async def job_status(job_id: str, jobs: JobsDep, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return (await _get(jobs, job_id, services, who)).status()


@router.get("/status/{job_id}")
async def job_status_alias(
    job_id: str, jobs: JobsDep, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    return (await _get(jobs, job_id, services, who)).status()


@router.get("/jobs/{job_id}/errors")
async def job_errors(
    job_id: str,
    jobs: JobsDep,
    services: ServicesDep,
    who: PrincipalDep,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Every failed file of the job's latest run, oldest first, from the job store."""
    job = await _get(jobs, job_id, services, who)
    total, rows = await jobs.errors(job, offset, limit)
    return {
        "job_id": job.id,
        "total": total,
        "offset": offset,
        "errors": [{"path": e.path, "stage": e.stage, "reason": e.reason, "at": e.at} for e in rows],
    }


async def _transition(
    jobs: JobManager, job_id: str, action: Callable[[str], Awaitable[Job]], services: Services, who: Principal
) -> dict[str, Any]:
    await _get(jobs, job_id, services, who)
    job = await transition(action, job_id)
    return {"job_id": job.id, "state": job.state.value}


@router.post("/jobs/{job_id}/pause")
async def pause_job(job_id: str, jobs: JobsDep, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return await _transition(jobs, job_id, jobs.pause, services, who)


@router.post("/jobs/{job_id}/resume")
async def resume_job(job_id: str, jobs: JobsDep, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return await _transition(jobs, job_id, jobs.resume, services, who)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, jobs: JobsDep, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return await _transition(jobs, job_id, jobs.cancel, services, who)
