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
from orchestrator.config import Settings
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
from orchestrator.pipeline.context import ScanScope, WatchScan
from orchestrator.pipeline.negotiate import collection_spec, pipeline_config
from orchestrator.pipeline.runner import run_pipeline
from orchestrator.security import PathInvalidError, PathNotAllowedError, resolve_ingest_root, resolve_s3_root
from orchestrator.services import Services
from orchestrator.sources.fetch import FetchPolicy
from orchestrator.sources.managed import ManagedArea
from orchestrator.sources.roots import Root, S3Prefix, parse_root
from orchestrator.sources.s3 import ObjectScan
from orchestrator.sources.spool import Spool, clear_spools, spool_root
from orchestrator.sources.streams import StreamRecording, recording_for
from orchestrator.sources.url_job import fetch_phase
from orchestrator.versions import drop_version, ensure_current, retire
from orchestrator.watch import FolderWatcher

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
        await asyncio.to_thread(clear_spools, self._services.settings.data_dir)  # a killed process's copies
        self._services.metrics.count_ended(ended)
        resumed = []
        for row in await self._store.load_active(frozenset(ACTIVE)):
            job = Job.from_row(row)
            refusal = None
            if job.kind != REANALYZE:  # a re-analysis checks each root when it walks it
                refusal = await asyncio.to_thread(_root_refusal, job.root, self._services.settings)
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
        self, root: Root, collection: str, options: dict[str, Any], idempotency_key: str | None = None
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
        watcher: FolderWatcher | None = None
        stream: StreamRecording | None = None
        try:
            if job.streams:  # it records at once (paused or queued too); its passes wait for a slot
                stream = await self._stream(job)
                await stream.start()
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
                if stream is not None:  # the first pass also ingests what an earlier run left
                    await self._stream_pass(job, stream, None)
                elif job.watches:  # listening before the first pass reads the tree: no change falls between
                    watcher = self._watcher(job)
                    await watcher.start()
                    await self._watched_pass(job, watcher, None)
                else:
                    await self._execute(job)
            if watcher is not None:
                await self._watch(job, watcher)  # until a cancel (or its root goes)
            if stream is not None:
                await self._follow_stream(job, stream)  # until a cancel
            job.transition(JobState.CANCELLED if job.cancel_requested else JobState.COMPLETED)
            log.info("job_cancelled" if job.cancel_requested else "job_completed", **job.progress.counters)
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
            if stream is not None:
                await stream.close()  # the recorder is gone when the job has ended
            snapshots.cancel()
            if watcher is not None:
                await watcher.close()
            # The final write must land even while this task is being cancelled.
            await asyncio.shield(self.save(job))
            if not job.active:
                self._forget(job)

    def _watcher(self, job: Job) -> FolderWatcher:
        settings = self._services.settings
        hidden = bool(job.options.get("include_hidden", settings.include_hidden))
        ignored = (str(settings.data_dir),)  # (each pass writes there)
        return FolderWatcher(str(job.root), settings.watch_settle_s, hidden, job.watch, ignored)

    async def _watch(self, job: Job, watcher: FolderWatcher) -> None:
        """A watching job after its first pass: each burst of settled changes is one more pass over the
        directories they touched (never two at once; changes during a pass wait for the next). A pass takes
        a job slot only while it runs, so an idle watcher blocks no other job. Paused, it collects changes
        and passes over them after resume. Returns when a cancel came during a pass's finishing steps."""
        while not job.cancel_requested:
            burst = await watcher.next_burst(job.control.running)
            async with self._slots:
                log.info("watch_pass", paths=burst.paths, whole=burst.scope is None)
                await self._watched_pass(job, watcher, burst.scope)

    async def _watched_pass(self, job: Job, watcher: FolderWatcher, scope: ScanScope | None) -> None:
        """One pass of a watching job (scope None: its whole root); files it found still being written
        are watched until they settle."""
        scan = WatchScan(self._services.settings.watch_settle_s, scope)
        started = time.monotonic()
        await self._execute(job, scan)
        job.control.finishing = False  # idle until the next burst: a pause is accepted again
        job.watch.passes += 1
        job.watch.last_pass_at = time.time()
        job.watch.last_pass_s = round(time.monotonic() - started, 3)
        watcher.requeue(scan.deferred)

    async def _snapshots(self, job: Job) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            if job.progress.started_at is not None:
                await self.save(job)  # rows are idempotent: a write cut short is simply redone

    async def _stream(self, job: Job) -> StreamRecording:
        if not isinstance(job.root, Path):
            raise TypeError("a stream's root is its local directory")
        return await recording_for(job.root, job.options, self._services.settings, job.stream)

    async def _follow_stream(self, job: Job, stream: StreamRecording) -> None:
        """A live stream after its first pass: each time segments close (or some pass the retention) one
        more pass over its directory, one at a time, each holding a job slot only while it runs. Paused,
        the recorder goes on (its buffer bounded) and the passes wait for resume."""
        while not job.cancel_requested:
            await stream.next_batch(job.control.running)
            async with self._slots:
                await self._stream_pass(job, stream, ScanScope(shallow=frozenset({str(job.root)})))

    async def _stream_pass(self, job: Job, stream: StreamRecording, scope: ScanScope | None) -> None:
        """One pass over the stream's directory (scope None: the first, over the whole root)."""
        batch = await stream.take()
        await self._execute(job, WatchScan(0.0, scope))  # a segment is complete once it has its name
        job.control.finishing = False  # idle until the next segment: a pause is accepted again
        stream.done(batch)

    async def _execute(self, job: Job, watch: WatchScan | None = None) -> None:
        """Bring the collection to the models and settings of now (a re-analysis in place, or a new
        version built beside the current one and switched to), then, for an ingest, ingest its root (a
        watching job: the directories of `watch.scope`)."""
        services = self._services
        # A URL job's file first (its root is a local directory): a refused URL touches nothing.
        if job.options.get("source") == "url" and isinstance(job.root, Path):
            policy = FetchPolicy.from_settings(services.settings)
            await fetch_phase(job.root, str(job.options["url"]), policy, job.progress.source.update)
        caps = await services.ml.capabilities(on_wait=job.progress.set_waiting)
        now = current_manifest(caps.models, services.settings)
        reanalysis = job.kind == REANALYZE
        if not reanalysis:  # an upload's directory is recorded as its collection's uploads (managed.py)
            catalog_root = job.root
            if isinstance(catalog_root, Path):
                catalog_root = ManagedArea(services.settings.upload_root).catalog_root(catalog_root)
            await services.catalog.add_root(job.collection, str(catalog_root))
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
                await self._pass(job, caps, current.physical, job.root, watch=watch)
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

    async def _roots(self, job: Job) -> tuple[list[Root], list[str]]:
        """The roots the collection's files came from that may still be read, and why the others may not
        (the settings no longer allow one, or it is gone: an error of the job; its files stay as they are)."""
        catalog = self._services.catalog
        if not await catalog.roots(job.collection):  # a collection from before roots were recorded
            for row in await self._store.load_all():
                if row.collection == job.collection and row.root:
                    await catalog.add_root(job.collection, row.root)
        roots: list[Root] = []
        refused: list[str] = []
        for root in await catalog.roots(job.collection):
            parsed = parse_root(root)
            refusal = await asyncio.to_thread(_root_refusal, parsed, self._services.settings)
            if refusal is None and isinstance(parsed, S3Prefix):  # as a local root that is gone
                refusal = await asyncio.to_thread(self._services.objects.refusal, parsed)
            if refusal is None:
                roots.append(parsed)
            else:
                refused.append(f"{root}: {refusal}")
                job.progress.fail(root, "scan", f"root not re-analysed: {refusal}")
        return roots, refused

    async def _pass(
        self,
        job: Job,
        caps: Capabilities,
        physical: str,
        root: Root,
        reanalyze: bool = False,
        watch: WatchScan | None = None,
    ) -> None:
        """One run of the pipeline over one root into one physical collection (a watching job's: over the
        directories of its `watch.scope`)."""
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
        objects = None
        if isinstance(root, S3Prefix):  # listed by stages/scan_s3.py, downloads spooled under DATA_DIR
            spool = Spool(spool_root(services.settings.data_dir) / job.id, services.settings.s3_spool_bytes)
            objects = ObjectScan(root, services.objects, spool, services.settings.s3_download_workers)
        ctx = services.pipeline_context(
            job_id=job.id,
            root=root if isinstance(root, Path) else Path(),
            collection=physical,
            config=config,
            progress=progress,
            control=job.control,
            watch=watch,
            objects=objects,
        )
        await run_pipeline(ctx)
        scoped = watch is not None and watch.scope is not None  # a few files: the next whole pass indexes
        if not scoped and await services.store.count(physical) >= services.settings.ann_index_threshold:
            await services.store.optimize(physical)


def _root_refusal(root: Root, settings: Settings) -> str | None:
    """Why a job's root may not be ingested now (ALLOWED_ROOTS or S3_ALLOWED_BUCKETS changed, the directory
    is gone or a symlink on the way now leads elsewhere); None when it may. UPLOAD_DIR is always allowed.
    Blocking: it looks at the file system (not at an object store: a bucket gone fails the job's scan)."""
    if isinstance(root, S3Prefix):
        try:
            resolve_s3_root(root.uri, settings.s3_allowed_bucket_set)
        except (PathNotAllowedError, PathInvalidError) as exc:
            return str(exc)
        return None
    try:
        resolved = resolve_ingest_root(str(root), settings.allowed_root_paths, settings.managed_root_paths)
    except (PathNotAllowedError, PathInvalidError) as exc:
        return str(exc)
    if resolved != root:
        return f"{str(root)!r} now resolves to {str(resolved)!r}"
    return None
