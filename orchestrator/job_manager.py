"""Runs jobs: submits, pauses, resumes, cancels; persists them; resumes unfinished ones after a restart.

Memory holds only the jobs this process runs (queued, running, paused, and one finishing its last write):
an ended job leaves it once its final row is written, and is read back from the job store when asked for
(status, errors, events), so memory does not grow with history.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

from orchestrator.clients.ml import Capabilities
from orchestrator.collection_locks import CollectionLocks
from orchestrator.job_store import ErrorRow, JobStore
from orchestrator.jobs import (
    ACTIVE,
    REANALYZE,
    InvalidTransitionError,
    Job,
    JobFinishingError,
    JobNotFoundError,
    JobState,
)
from orchestrator.logs import get_logger
from orchestrator.manifest import Manifest, compare, current_manifest
from orchestrator.people import check_vector_sizes
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.negotiate import collection_spec, pipeline_config
from orchestrator.pipeline.runner import run_pipeline
from orchestrator.security import PathInvalidError, PathNotAllowedError, resolve_ingest_root
from orchestrator.services import Services
from orchestrator.versions import drop_version, ensure_current, retire

log = get_logger(__name__)

# A running job's row and new errors are written at most this often (and at every state change).
SNAPSHOT_INTERVAL_S = 1.0


class JobManager:
    def __init__(self, services: Services, store: JobStore) -> None:
        self._services = services
        self._store = store
        self._jobs: dict[str, Job] = {}  # the jobs in memory (see the module's docstring)
        self._by_idempotency_key: dict[str, str] = {}  # of the jobs in memory; the store has the rest
        self._slots = asyncio.Semaphore(services.settings.max_concurrent_jobs)
        self._save_lock = asyncio.Lock()
        self._submit_lock = asyncio.Lock()
        self.locks = CollectionLocks()  # ingests share a collection, a re-analysis or rebuild has it alone

    async def restore(self) -> list[Job]:
        """Resume the jobs that were active when the last process died (the stat index skips what they
        finished); a paused job comes back paused. A job whose root the settings no longer allow (or that
        is gone) does not run: it ends failed with the reason. Returns the resumed jobs."""
        ended = {state: n for state, n in (await self._store.count_by_state()).items() if state not in ACTIVE}
        self._services.metrics.count_ended(ended)
        resumed = []
        for row in await self._store.load_active(frozenset(ACTIVE)):
            job = Job.from_row(row)
            refusal = None
            if job.kind != REANALYZE:  # a re-analysis checks each root when it walks it
                refusal = await asyncio.to_thread(
                    _root_refusal, job.root, self._services.settings.allowed_root_paths
                )
            if refusal is not None:
                job.error = f"not resumed after a restart: {refusal}"
                job.transition(JobState.FAILED)
                await self.save(job)
                self._services.metrics.retire_job(job)
                log.warning("job_not_resumed", job_id=job.id, reason=refusal)
                continue
            self._remember(job)
            if job.state is JobState.PAUSED:
                job.control.pause()
            else:
                job.state = JobState.QUEUED
            await self._store.clear_errors(job.id)  # the new run finds and records them again
            job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            resumed.append(job)
            log.info("job_resumed", job_id=job.id, state=job.state.value, runs=job.runs)
        return resumed

    async def get(self, job_id: str) -> Job:
        """The job: live when in memory, else as the store last recorded it."""
        job = self._jobs.get(job_id)
        if job is not None:
            return job
        row = await self._store.load(job_id)
        if row is None:
            raise JobNotFoundError(job_id)
        return Job.from_row(row)

    async def all(self) -> list[Job]:
        """Every job, newest first (those in memory live)."""
        jobs = [self._jobs.get(row.id) or Job.from_row(row) for row in await self._store.load_all()]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def live(self) -> list[Job]:
        """The jobs in memory: queued, running, paused, or writing their last row."""
        return list(self._jobs.values())

    async def submit(
        self, root: Path, collection: str, options: dict[str, Any], idempotency_key: str | None = None
    ) -> Job:
        """Start a job. A repeated Idempotency-Key returns the job it created; the same root and
        collection while a job on them is active returns that job."""
        async with self._submit_lock:  # one check-then-create at a time (the key lookup awaits the store)
            if idempotency_key:
                if idempotency_key in self._by_idempotency_key:
                    return self._jobs[self._by_idempotency_key[idempotency_key]]
                row = await self._store.find_by_key(idempotency_key)
                if row is not None:
                    return self._jobs.get(row.id) or Job.from_row(row)
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
            self._remember(job)
            await self.save(job)
            job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            return job

    async def submit_reanalysis(self, collection: str, tasks: list[str] | None) -> Job:
        """Start a re-analysis of the collection (what its manifest says is stale, and `tasks` again
        whatever the cache holds). An active re-analysis of the collection is returned instead."""
        async with self._submit_lock:
            for job in self._jobs.values():
                if job.collection == collection and job.kind == REANALYZE and job.active:
                    return job
            options: dict[str, Any] = {"kind": REANALYZE}
            if tasks:
                options["tasks"] = list(tasks)
            job = Job(id=uuid.uuid4().hex, root=Path(), collection=collection, options=options)
            self._remember(job)
            await self.save(job)
            job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            return job

    async def pause(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job.finishing:
            raise JobFinishingError(job, JobState.PAUSED)
        job.transition(JobState.PAUSED)
        job.control.pause()
        await self.save(job)
        return job

    async def resume(self, job_id: str) -> Job:
        job = await self.get(job_id)
        job.transition(JobState.RUNNING)
        job.control.resume()
        await self.save(job)
        return job

    async def cancel(self, job_id: str) -> Job:
        """Stop the job now; during its finishing steps, once they are done (they are not interrupted:
        what they write stays consistent). Either way it ends cancelled."""
        job = await self.get(job_id)
        if job.finishing:
            job.cancel_requested = True
            log.info("job_cancel_after_finishing", job_id=job.id)
            await self.wait(job_id)
            if job.state is not JobState.CANCELLED:  # its finishing failed meanwhile
                raise InvalidTransitionError(job, JobState.CANCELLED)
            return job
        job.transition(JobState.CANCELLED)
        job.control.stop()
        if job.task is not None:
            job.task.cancel()
        await self.save(job)
        return job

    async def wait(self, job_id: str) -> Job:
        """The job once it has ended (or been stopped by shutdown). A waiter that is cancelled (a client
        gone) leaves the job alone."""
        job = await self.get(job_id)
        if job.task is not None:
            await asyncio.wait({job.task})
        return job

    async def save(self, job: Job) -> None:
        """Persist the job's row and its errors not stored yet (serialised: rows never go back in time)."""
        async with self._save_lock:
            errors = job.unsaved_errors()
            await self._store.save(job.to_row(), errors)
            job.stored_errors += len(errors)

    async def errors(self, job: Job, offset: int, limit: int) -> tuple[int, list[ErrorRow]]:
        if job.id in self._jobs:
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

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        if job.idempotency_key:
            self._by_idempotency_key[job.idempotency_key] = job.id

    def _forget(self, job: Job) -> None:
        """An ended job leaves memory (its row is written): the store serves it from now on."""
        self._jobs.pop(job.id, None)
        if job.idempotency_key:
            self._by_idempotency_key.pop(job.idempotency_key, None)
        self._services.metrics.retire_job(job)

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
                job.transition(JobState.CANCELLED if job.cancel_requested else JobState.COMPLETED)
                log.info(
                    "job_cancelled" if job.cancel_requested else "job_completed", **job.progress.counters
                )
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
            if not job.active:
                self._forget(job)

    async def _snapshots(self, job: Job) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            if job.progress.started_at is not None:
                await self.save(job)  # rows are idempotent: a write cut short is simply redone

    async def _execute(self, job: Job) -> None:
        """Bring the collection to the models and settings of now (a re-analysis in place, or a new
        version built beside the current one and switched to), then, for an ingest, ingest its root."""
        services = self._services
        caps = await services.ml.capabilities(on_wait=job.progress.set_waiting)
        now = current_manifest(caps.models, services.settings)
        reanalysis = job.kind == REANALYZE
        if not reanalysis:
            await services.catalog.add_root(job.collection, str(job.root))
        async with self.locks.shared(job.collection):
            current = await ensure_current(services.store, services.catalog, job.collection, now, caps.models)
            stale = compare(current.manifest, now)
        job.progress.reanalysis = stale.to_json()
        if stale.kind != "current" or job.refresh_tasks:
            async with self.locks.exclusive(job.collection):
                await self._upgrade(job, caps, now)
        if not reanalysis and not job.cancel_requested:
            async with self.locks.shared(job.collection):
                current = await ensure_current(
                    services.store, services.catalog, job.collection, now, caps.models
                )
                await self._pass(job, caps, current.physical, job.root)
        # Replaced versions past COLLECTION_VERSIONS_KEPT go (also what a crash left half deleted).
        kept = services.settings.collection_versions_kept
        await retire(services.store, services.index, services.catalog, services.people, job.collection, kept)

    async def _upgrade(self, job: Job, caps: Capabilities, now: Manifest) -> None:
        """Under the collection's exclusive lock: what the manifest of now asks of it (checked again: the
        job that held the lock before may have done it)."""
        services = self._services
        catalog = services.catalog
        current = await ensure_current(services.store, catalog, job.collection, now, caps.models)
        stale = compare(current.manifest, now)
        job.progress.reanalysis = stale.to_json()
        log.info("collection_upgrade", refresh=job.refresh_tasks, **stale.to_json())
        roots, refused = await self._roots(job)
        if stale.kind == "rebuild":
            if refused:  # a version without those files would drop them from every search
                raise RuntimeError(
                    f"cannot build a new version of {job.collection}: {len(refused)} of its roots cannot be "
                    f"read now ({'; '.join(refused)}); their files would leave the collection"
                )
            building = await catalog.building(job.collection)
            if building is not None and building.manifest.digest() != now.digest():
                await drop_version(
                    services.store, services.index, catalog, services.people, building
                )  # models moved on
                building = None
            if building is None:
                building = await catalog.start_build(job.collection, now)
                # Names, merges and rejected links carry over: the same faces re-form the same clusters.
                await services.people.copy(current.physical, building.physical)
            job.progress.reanalysis.update(building=building.version, phase="building")
            for root in roots:
                await self._pass(job, caps, building.physical, root)
                if job.cancel_requested:
                    return
            await catalog.switch(job.collection, building.version)
            job.progress.reanalysis["phase"] = "switched"
            log.info("collection_switched", collection=job.collection, version=building.version)
            return
        if stale.kind == "derived" or job.refresh_tasks:
            job.progress.reanalysis["phase"] = "reanalysing"
            for root in roots:
                await self._pass(job, caps, current.physical, root, reanalyze=True)
                if job.cancel_requested:
                    return
            if refused:  # their files keep the old results: the collection stays stale (GET shows it)
                job.progress.reanalysis["phase"] = "partial"
                return
            await catalog.set_manifest(job.collection, current.version, now)
            job.progress.reanalysis["phase"] = "done"

    async def _roots(self, job: Job) -> tuple[list[Path], list[str]]:
        """The roots the collection's files came from that may still be read, and why the others may not
        (the settings no longer allow one, or it is gone: an error of the job; its files stay as they are)."""
        catalog = self._services.catalog
        if not await catalog.roots(job.collection):  # a collection from before roots were recorded
            for row in await self._store.load_all():
                if row.collection == job.collection and row.root:
                    await catalog.add_root(job.collection, row.root)
        roots: list[Path] = []
        refused: list[str] = []
        for root in await catalog.roots(job.collection):
            refusal = await asyncio.to_thread(
                _root_refusal, Path(root), self._services.settings.allowed_root_paths
            )
            if refusal is None:
                roots.append(Path(root))
            else:
                refused.append(f"{root}: {refusal}")
                job.progress.fail(root, "scan", f"root not re-analysed: {refusal}")
        return roots, refused

    async def _pass(
        self, job: Job, caps: Capabilities, physical: str, root: Path, reanalyze: bool = False
    ) -> None:
        """One run of the pipeline over one root into one physical collection."""
        services = self._services
        progress = job.progress
        job.control.stop_flag.clear()  # the last pass's end; a cancel also cancels the job's task
        job.control.finishing = False
        config = pipeline_config(
            services.settings, caps, job.options, reanalyze=reanalyze, refresh_tasks=job.refresh_tasks
        )
        progress.batch_sizes.update({"infer": config.infer_batch, "upsert": config.upsert_batch})
        await services.store.ensure_collection(physical, collection_spec(caps))
        await check_vector_sizes(services.store, physical, caps.models)
        ctx = PipelineContext(
            job_id=job.id,
            root=root,
            collection=physical,
            config=config,
            store=services.store,
            index=services.index,
            cache=services.cache,
            ml=services.ml,
            progress=progress,
            control=job.control,
            decoder=services.decoder,
            people=services.people,
            media_slots=asyncio.Semaphore(max(1, services.settings.media_in_flight)),
        )
        await run_pipeline(ctx)
        if await services.store.count(physical) >= services.settings.ann_index_threshold:
            await services.store.optimize(physical)


def _root_refusal(root: Path, allowed: list[Path]) -> str | None:
    """Why a job's root may not be ingested now (ALLOWED_ROOTS changed, the directory is gone or a symlink
    on the way now leads elsewhere); None when it may. Blocking: it looks at the file system."""
    try:
        resolved = resolve_ingest_root(str(root), allowed)
    except (PathNotAllowedError, PathInvalidError) as exc:
        return str(exc)
    if resolved != root:
        return f"{str(root)!r} now resolves to {str(resolved)!r}"
    return None
