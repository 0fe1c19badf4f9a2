"""Running ingest jobs in a benchmark: the real JobManager over the real services, as the API runs it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.job_manager import JobManager
from orchestrator.job_store import JobStore
from orchestrator.jobs import Job, JobState
from orchestrator.services import Services


@asynccontextmanager
async def job_manager(settings: Settings) -> AsyncIterator[tuple[Services, JobManager]]:
    """The services and a JobManager over them, closed on exit."""
    services = await Services.open(settings)
    job_store = JobStore(settings.jobs_db_path)
    await job_store.open()
    try:
        yield services, JobManager(services, job_store)
    finally:
        await job_store.close()
        await services.close()


async def completed_job(manager: JobManager, root: Path, collection: str = "bench") -> tuple[float, Job]:
    """Run one job to its end: wall seconds and the job; raises unless it completed."""
    start = time.perf_counter()
    job = await manager.submit(root, collection, {})
    await manager.wait(job.id)
    wall = time.perf_counter() - start
    if job.state is not JobState.COMPLETED:
        raise RuntimeError(f"job ended {job.state}: {job.error}")
    return wall, job
