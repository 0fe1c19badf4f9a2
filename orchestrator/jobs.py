"""Jobs: a small, validated state machine and the manager that runs each job's pipeline.

States: queued -> running <-> paused -> completed | failed | cancelled. Allowed transitions live in one
table; an invalid one raises InvalidTransitionError (HTTP 409).
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from orchestrator.cache import models_signature
from orchestrator.clients.ml import Capabilities
from orchestrator.clients.vectors import CollectionSpec
from orchestrator.logs import get_logger
from orchestrator.pipeline.context import JobControl, PipelineConfig, PipelineContext
from orchestrator.pipeline.progress import JobProgress
from orchestrator.pipeline.records import FLOAT_FIELDS, KEYWORD_FIELDS
from orchestrator.pipeline.runner import run_pipeline
from orchestrator.services import Services

log = get_logger(__name__)

IMAGE_ENDPOINT = "/v1/analyze/images"
TEXT_ENDPOINT = "/v1/embed/text"
# PERF.md measured Edge upserts in batches of 256 at ~12k points/s; larger batches gain nothing there.
DEFAULT_UPSERT_BATCH = 256
# Models whose output a chunk record depends on: their versions go into every result-cache key.
RECORD_MODELS = ["text", "ocr", "faces", "tags", "objects", "captions", "image_text"]


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.PAUSED, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
    JobState.PAUSED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}
ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSED})


class InvalidTransitionError(Exception):
    def __init__(self, job: Job, target: JobState) -> None:
        super().__init__(f"job {job.id} is {job.state.value}; cannot become {target.value}")
        self.current = job.state


class JobNotFoundError(Exception):
    pass


@dataclass(slots=True)
class Job:
    id: str
    root: Path
    collection: str
    options: dict[str, Any]
    state: JobState = JobState.QUEUED
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    progress: JobProgress = field(default_factory=JobProgress)
    control: JobControl = field(default_factory=JobControl)
    task: asyncio.Task[None] | None = None

    def transition(self, target: JobState) -> None:
        if target not in TRANSITIONS[self.state]:
            raise InvalidTransitionError(self, target)
        self.state = target
        if target not in ACTIVE:
            self.finished_at = time.time()
            self.progress.finished_at = self.finished_at

    def to_dict(self, max_errors: int = 20) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "state": self.state.value,
            "path": str(self.root),
            "collection": self.collection,
            "options": self.options,
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            **self.progress.snapshot(max_errors),
        }


class JobManager:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._jobs: dict[str, Job] = {}
        self._by_idempotency_key: dict[str, str] = {}
        self._slots = asyncio.Semaphore(services.settings.max_concurrent_jobs)

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(job_id) from None

    def list(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def submit(
        self, root: Path, collection: str, options: dict[str, Any], idempotency_key: str | None = None
    ) -> Job:
        """Start a job; the same root + collection while one is active returns that job, and so does
        a repeated Idempotency-Key."""
        if idempotency_key and idempotency_key in self._by_idempotency_key:
            return self._jobs[self._by_idempotency_key[idempotency_key]]
        for job in self._jobs.values():
            if job.root == root and job.collection == collection and job.state in ACTIVE:
                return job
        job = Job(id=uuid.uuid4().hex, root=root, collection=collection, options=dict(options))
        self._jobs[job.id] = job
        if idempotency_key:
            self._by_idempotency_key[idempotency_key] = job.id
        job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        return job

    def pause(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.transition(JobState.PAUSED)
        job.control.pause()
        return job

    def resume(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.transition(JobState.RUNNING)
        job.control.resume()
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.transition(JobState.CANCELLED)
        job.control.stop()
        if job.task is not None:
            job.task.cancel()
        return job

    async def shutdown(self) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for job in self._jobs.values():
            job.control.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.task is not None:
            await asyncio.gather(job.task, return_exceptions=True)
        return job

    async def _run(self, job: Job) -> None:
        structlog.contextvars.bind_contextvars(job_id=job.id)
        try:
            async with self._slots:
                if job.state is not JobState.QUEUED:
                    return
                job.transition(JobState.RUNNING)
                job.progress.started_at = time.time()
                log.info("job_start", path=str(job.root), collection=job.collection)
                await self._execute(job)
                job.transition(JobState.COMPLETED)
                log.info("job_completed", **job.progress.counters)
        except asyncio.CancelledError:
            if job.state in ACTIVE:
                job.transition(JobState.CANCELLED)
            log.info("job_cancelled")
            raise
        except Exception as exc:  # the job's failure reason; the service itself goes on
            job.error = f"{type(exc).__name__}: {exc}"
            if job.state in ACTIVE:
                job.transition(JobState.FAILED)
            log.error("job_failed", error=job.error)

    async def _execute(self, job: Job) -> None:
        services = self._services
        settings = services.settings
        caps = await services.ml.capabilities()
        config = self._config(caps, job)
        job.progress.batch_sizes.update({"infer": config.infer_batch, "upsert": config.upsert_batch})
        await services.store.ensure_collection(job.collection, collection_spec(caps))
        ctx = PipelineContext(
            job_id=job.id,
            root=job.root,
            collection=job.collection,
            config=config,
            store=services.store,
            index=services.index,
            cache=services.cache,
            ml=services.ml,
            progress=job.progress,
            control=job.control,
        )
        await run_pipeline(ctx)
        if await services.store.count(job.collection) >= settings.ann_index_threshold:
            await services.store.optimize(job.collection)

    def _config(self, caps: Capabilities, job: Job) -> PipelineConfig:
        settings = self._services.settings
        image_limits = caps.limits(IMAGE_ENDPOINT)
        text_limits = caps.limits(TEXT_ENDPOINT)
        negotiated = min(image_limits.preferred_batch, text_limits.max_batch)
        infer_batch = settings.ml_inference_batch_size or negotiated
        infer_batch = max(1, min(infer_batch, image_limits.max_batch, text_limits.max_batch))
        return PipelineConfig(
            queue_size=settings.queue_size,
            prepare_workers=settings.prepare_workers,
            # One batch more in flight than the service runs at once: the next batch is already waiting
            # there when one finishes, so the service never idles while we parse and embed.
            infer_workers=max(1, min(settings.infer_workers, image_limits.max_concurrency + 1)),
            infer_batch=infer_batch,
            upsert_batch=settings.qdrant_upsert_batch_size or DEFAULT_UPSERT_BATCH,
            ml_image_max_side=settings.ml_image_max_side,
            thumbnail_size=settings.thumbnail_size,
            max_image_pixels=settings.max_image_pixels,
            max_file_bytes=settings.max_file_bytes,
            include_hidden=bool(job.options.get("include_hidden", settings.include_hidden)),
            thumbnails_dir=settings.thumbnails_dir,
            models_signature=models_signature(caps.models, RECORD_MODELS),
            image_vectors=caps.image_dim is not None,
        )


def collection_spec(caps: Capabilities) -> CollectionSpec:
    dense = {"text": caps.text_dim}
    if caps.image_dim is not None:
        dense["image"] = caps.image_dim
    return CollectionSpec(dense=dense, keyword_indexes=KEYWORD_FIELDS, float_indexes=FLOAT_FIELDS)
