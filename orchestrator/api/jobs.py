"""Routes for jobs: create (and the seed's /ingest alias), list, status, pause/resume/cancel, errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status

from orchestrator.api.deps import CollectionDeletions, DeletionsDep, JobsDep, ServicesDep
from orchestrator.api.schemas import IngestAlias, JobAccepted, JobCreate, JobOptions
from orchestrator.job_manager import JobManager
from orchestrator.jobs import InvalidTransitionError, Job, JobNotFoundError
from orchestrator.security import PathInvalidError, PathNotAllowedError, resolve_ingest_root

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
    idempotency_key: str | None = None,
) -> Job:
    try:
        root = resolve_ingest_root(path, services.settings.allowed_root_paths)
    except PathNotAllowedError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except PathInvalidError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    name = collection or services.settings.default_collection
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is being deleted")
    return await jobs.submit(root, name, options.as_job_options(), idempotency_key)


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
async def create_job(
    body: JobCreate,
    request: Request,
    services: ServicesDep,
    jobs: JobsDep,
    deletions: DeletionsDep,
    idempotency_key: str | None = Header(default=None),
) -> JobAccepted:
    job = await _submit(services, jobs, deletions, body.path, body.collection, body.options, idempotency_key)
    return accepted(job, request)


@router.post("/ingest", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
async def ingest_alias(
    body: IngestAlias, request: Request, services: ServicesDep, jobs: JobsDep, deletions: DeletionsDep
) -> JobAccepted:
    job = await _submit(services, jobs, deletions, body.directory_path, body.collection, body.options)
    return accepted(job, request)


@router.get("/jobs")
async def list_jobs(jobs: JobsDep) -> dict[str, Any]:
    return {"jobs": [job.status(max_errors=3) for job in await jobs.all()]}


async def _get(jobs: JobManager, job_id: str) -> Job:
    try:
        return await jobs.get(job_id)
    except JobNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}") from exc


@router.get("/jobs/{job_id}", name="job_status")
async def job_status(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    return (await _get(jobs, job_id)).status()


@router.get("/status/{job_id}")
async def job_status_alias(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    return (await _get(jobs, job_id)).status()


@router.get("/jobs/{job_id}/errors")
async def job_errors(
    job_id: str, jobs: JobsDep, offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)
) -> dict[str, Any]:
    """Every failed file of the job's latest run, oldest first, from the job store."""
    job = await _get(jobs, job_id)
    total, rows = await jobs.errors(job, offset, limit)
    return {
        "job_id": job.id,
        "total": total,
        "offset": offset,
        "errors": [{"path": e.path, "stage": e.stage, "reason": e.reason, "at": e.at} for e in rows],
    }


async def _transition(
    jobs: JobManager, job_id: str, action: Callable[[str], Awaitable[Job]]
) -> dict[str, Any]:
    await _get(jobs, job_id)
    try:
        job = await action(job_id)
    except InvalidTransitionError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, {"detail": str(exc), "state": exc.current.value}
        ) from exc
    return {"job_id": job.id, "state": job.state.value}


@router.post("/jobs/{job_id}/pause")
async def pause_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    return await _transition(jobs, job_id, jobs.pause)


@router.post("/jobs/{job_id}/resume")
async def resume_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    return await _transition(jobs, job_id, jobs.resume)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    return await _transition(jobs, job_id, jobs.cancel)
