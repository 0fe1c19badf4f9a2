"""Runs jobs: submits, pauses, resumes, cancels; persists them; resumes unfinished ones after a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

from orchestrator.job_store import ErrorRow, JobStore
from orchestrator.jobs import Job, JobNotFoundError, JobState
from orchestrator.logs import get_logger
from orchestrator.people import check_vector_sizes
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.negotiate import collection_spec, pipeline_config
from orchestrator.pipeline.runner import run_pipeline
from orchestrator.services import Services

log = get_logger(__name__)

# A running job's row and new errors are written at most this often (and at every state change).
SNAPSHOT_INTERVAL_S = 1.0


class JobManager:
    def __init__(self, services: Services, store: JobStore) -> None:
        self._services = services
        self._store = store
        self._jobs: dict[str, Job] = {}
        self._by_idempotency_key: dict[str, str] = {}
        self._slots = asyncio.Semaphore(services.settings.max_concurrent_jobs)
        self._save_lock = asyncio.Lock()

    async def restore(self) -> list[Job]:
        """Load history; jobs that were active when the last process died run again (the stat index
        skips what they finished). A paused job comes back paused. Returns the resumed jobs."""
        resumed = []
        for row in await self._store.load_all():
            job = Job.from_row(row)
            self._jobs[job.id] = job
            if job.idempotency_key:
                self._by_idempotency_key[job.idempotency_key] = job.id
            if job.active:
                if job.state is JobState.PAUSED:
                    job.control.pause()
                else:
                    job.state = JobState.QUEUED
                await self._store.clear_errors(job.id)  # the new run finds and records them again
                job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
                resumed.append(job)
                log.info("job_resumed", job_id=job.id, state=job.state.value, runs=job.runs)
        return resumed

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(job_id) from None

    def all(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    async def submit(
        self, root: Path, collection: str, options: dict[str, Any], idempotency_key: str | None = None
    ) -> Job:
        """Start a job. A repeated Idempotency-Key returns the job it created; the same root and
        collection while a job on them is active returns that job."""
        if idempotency_key and idempotency_key in self._by_idempotency_key:
            return self._jobs[self._by_idempotency_key[idempotency_key]]
        for job in self._jobs.values():
            if job.root == root and job.collection == collection and job.active:
                return job
        job = Job(
            id=uuid.uuid4().hex,
            root=root,
            collection=collection,
            options=dict(options),
            idempotency_key=idempotency_key,
        )
        self._jobs[job.id] = job
        if idempotency_key:
            self._by_idempotency_key[idempotency_key] = job.id
        await self.save(job)
        job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        return job

    async def pause(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.transition(JobState.PAUSED)
        job.control.pause()
        await self.save(job)
        return job

    async def resume(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.transition(JobState.RUNNING)
        job.control.resume()
        await self.save(job)
        return job

    async def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.transition(JobState.CANCELLED)
        job.control.stop()
        if job.task is not None:
            job.task.cancel()
        await self.save(job)
        return job

    async def wait(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.task is not None:
            await asyncio.gather(job.task, return_exceptions=True)
        return job

    async def save(self, job: Job) -> None:
        """Persist the job's row and its errors not stored yet (serialised: rows never go back in time)."""
        async with self._save_lock:
            errors = job.unsaved_errors()
            await self._store.save(job.to_row(), errors)
            job.stored_errors += len(errors)

    async def errors(self, job: Job, offset: int, limit: int) -> tuple[int, list[ErrorRow]]:
        await self.save(job)  # errors recorded since the last snapshot are in the answer too
        return await self._store.errors(job.id, offset, limit)

    async def shutdown(self) -> None:
        """Stop every job's pipeline; their rows keep their active state, so the next start resumes them."""
        running = [j for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for job in running:
            job.control.stop()
            assert job.task is not None
            job.task.cancel()
        await asyncio.gather(*(j.task for j in running if j.task is not None), return_exceptions=True)

    async def _run(self, job: Job) -> None:
        structlog.contextvars.bind_contextvars(job_id=job.id)
        snapshots = asyncio.create_task(self._snapshots(job))
        try:
            # A job restored as paused waits for resume before it takes a slot: it must not hold one idle.
            await job.control.running.wait()
            async with self._slots:
                if job.state is JobState.QUEUED:
                    job.transition(JobState.RUNNING)
                job.runs += 1
                job.started_at = job.started_at or time.time()
                job.progress.started_at = time.time()
                await self.save(job)
                log.info("job_start", path=str(job.root), collection=job.collection, run=job.runs)
                await self._execute(job)
                job.transition(JobState.COMPLETED)
                log.info("job_completed", **job.progress.counters)
        except asyncio.CancelledError:
            if job.state is JobState.CANCELLED:
                log.info("job_cancelled")
            else:
                log.info("job_interrupted", state=job.state.value)  # shutdown: resumed at next start
            raise
        except Exception as exc:  # the job's failure reason; the service itself goes on
            job.error = f"{type(exc).__name__}: {exc}"
            if job.active:
                job.transition(JobState.FAILED)
            log.error("job_failed", error=job.error)
        finally:
            snapshots.cancel()
            # The final write must land even while this task is being cancelled.
            await asyncio.shield(self.save(job))

    async def _snapshots(self, job: Job) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            if job.progress.started_at is not None:
                await self.save(job)  # rows are idempotent: a write cut short is simply redone

    async def _execute(self, job: Job) -> None:
        services = self._services
        progress = job.progress
        caps = await services.ml.capabilities(on_wait=progress.set_waiting)
        config = pipeline_config(services.settings, caps, job.options)
        progress.batch_sizes.update({"infer": config.infer_batch, "upsert": config.upsert_batch})
        await services.store.ensure_collection(job.collection, collection_spec(caps))
        await check_vector_sizes(services.store, job.collection, caps.models)
        ctx = PipelineContext(
            job_id=job.id,
            root=job.root,
            collection=job.collection,
            config=config,
            store=services.store,
            index=services.index,
            cache=services.cache,
            ml=services.ml,
            progress=progress,
            control=job.control,
            decoder=services.decoder,
            media_slots=asyncio.Semaphore(max(1, services.settings.media_in_flight)),
        )
        await run_pipeline(ctx)
        if await services.store.count(job.collection) >= services.settings.ann_index_threshold:
            await services.store.optimize(job.collection)
