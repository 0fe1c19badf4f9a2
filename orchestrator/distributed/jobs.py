"""The API node's jobs in the distributed mode: a `JobManager` whose jobs run on `archivist worker`s.

Nothing runs here: a submit records the job in PostgreSQL and defers the scan of its root; pause, resume and
cancel are transitions of the job's row (the workers follow them, store.py/worker.py); GET and the event
streams read the sums over its scans and partitions. The Job objects handed out are kept while their job is
active and refreshed twice a second (so `api/events.py`'s producer, which watches one object, sees progress
made on other machines); an ended job is read from its row each time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import procrastinate

from orchestrator.distributed.store import ClusterStore, JobRecord
from orchestrator.distributed.tasks import defer_partition, defer_scan, queue_app
from orchestrator.job_manager import JobManager
from orchestrator.job_store import ErrorRow, JobStore
from orchestrator.jobs import TRANSITIONS, InvalidTransitionError, Job, JobNotFoundError, JobState
from orchestrator.logs import get_logger
from orchestrator.manifest import compare, current_manifest
from orchestrator.pipeline.negotiate import collection_spec
from orchestrator.pipeline.progress import JobProgress
from orchestrator.services import Services
from orchestrator.sources.roots import Root, S3Prefix, parse_root
from orchestrator.versions import ensure_current

log = get_logger(__name__)

_REFRESH_S = 0.5
_ERRORS_SHOWN = 20


async def open_cluster_jobs(services: Services, job_store: JobStore) -> ClusterJobs:
    """The distributed mode's PostgreSQL (DATABASE_URL): its tables, and the queue jobs are deferred to."""
    url = services.settings.database_url
    if not url:
        raise ValueError("the distributed mode needs DATABASE_URL")
    queue = queue_app(url)
    await queue.open_async()
    cluster = await ClusterStore.open(url)
    await cluster.apply_schema(queue.schema_manager.apply_schema_async)
    return ClusterJobs(services, job_store, cluster, queue)


class ClusterJobs(JobManager):
    def __init__(
        self, services: Services, job_store: JobStore, cluster: ClusterStore, queue: procrastinate.App
    ) -> None:
        super().__init__(services, job_store)
        self._cluster = cluster
        self._queue = queue
        self._shown: dict[str, Job] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def restore(self) -> list[Job]:
        self._refresher = asyncio.create_task(self._refresh_loop())
        return []  # the jobs run on the workers; PostgreSQL keeps them

    def live(self) -> list[Job]:
        return []  # none runs in this process (metrics of work done come from the workers' logs)

    async def shutdown(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self._queue.close_async()
        await self._cluster.close()

    async def submit(
        self, root: Root, collection: str, options: dict[str, Any], idempotency_key: str | None = None
    ) -> Job:
        services = self._services
        if (running := await self._cluster.active_job(str(root), collection)) is not None:
            return await self._job(running)  # as on one machine: the same root and collection, the same job
        unsupported = _unsupported(root, options)
        record = JobRecord(
            id=uuid.uuid4().hex,
            collection=collection,
            root=str(root),
            options=dict(options),
            state="running" if unsupported is None else "failed",
            error=unsupported,
            created_at=time.time(),
            started_at=time.time(),
            finished_at=None if unsupported is None else time.time(),
            idempotency_key=idempotency_key,
        )
        if unsupported is None:
            caps = await services.ml.capabilities()
            now = current_manifest(caps.models, services.settings)
            await services.catalog.add_root(collection, str(root))
            current = await ensure_current(services.store, services.catalog, collection, now, caps.models)
            stale = compare(current.manifest, now)
            if stale.kind != "current":
                why = (
                    f"collection {collection} was built with other models ({stale.kind}): upgrade it on one "
                    "machine first (README: Many machines)"
                )
                record = replace(record, state="failed", error=why, finished_at=time.time())
            else:  # the workers write into the version searched now (its physical collection)
                record = replace(record, options={**record.options, "physical": current.physical})
                await services.store.ensure_collection(current.physical, collection_spec(caps))
        stored = await self._cluster.insert_job(record)
        if stored.id == record.id and stored.state == "running":
            for directory in await self._cluster.add_scans(stored.id, [stored.root]):
                await defer_scan(self._queue, stored.id, directory)
            log.info("cluster_job_submitted", job_id=stored.id, root=stored.root, collection=collection)
        return await self._job(stored)

    async def submit_reanalysis(self, collection: str, tasks: list[str] | None) -> Job:
        record = JobRecord(
            id=uuid.uuid4().hex,
            collection=collection,
            root="",
            options={"kind": "reanalyze"},
            state="failed",
            error="re-analysis runs on one machine (README: Many machines), not across workers",
            created_at=time.time(),
            started_at=None,
            finished_at=time.time(),
            idempotency_key=None,
        )
        return await self._job(await self._cluster.insert_job(record))

    async def get(self, job_id: str) -> Job:
        record = await self._cluster.job(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        return await self._job(record)

    async def all(self) -> list[Job]:
        return [await self._job(record) for record in await self._cluster.jobs()]

    async def pause(self, job_id: str) -> Job:
        return await self._move(job_id, JobState.PAUSED)

    async def resume(self, job_id: str) -> Job:
        job = await self._move(job_id, JobState.RUNNING)
        for pid in await self._cluster.queued_partitions(job_id):
            await defer_partition(self._queue, pid)
        for directory in await self._cluster.queued_scans(job_id):
            await defer_scan(self._queue, job_id, directory)
        return job

    async def cancel(self, job_id: str) -> Job:
        return await self._move(job_id, JobState.CANCELLED)

    async def wait(self, job_id: str) -> Job:
        while True:
            job = await self.get(job_id)
            if not job.active:
                return job
            await asyncio.sleep(_REFRESH_S)

    async def errors(self, job: Job, offset: int, limit: int) -> tuple[int, list[ErrorRow]]:
        total, rows = await self._cluster.errors(job.id, offset, limit)
        return total, [
            ErrorRow(seq=offset + i, path=path, stage=stage, reason=reason, at=at)
            for i, (path, stage, reason, at) in enumerate(rows)
        ]

    async def _move(self, job_id: str, target: JobState) -> Job:
        job = await self.get(job_id)
        allowed = [s.value for s in JobState if target in TRANSITIONS[s]]
        record = await self._cluster.set_state(job_id, target.value, allowed)
        if record is None:
            raise InvalidTransitionError(job, target)
        return await self._job(record)

    async def _job(self, record: JobRecord) -> Job:
        job = self._shown.get(record.id)
        if job is None:
            job = Job(
                id=record.id,
                root=parse_root(record.root) if record.root else Path(),
                collection=record.collection,
                options=record.options,
                idempotency_key=record.idempotency_key,
                created_at=record.created_at,
            )
        await self._fill(job, record)
        if job.active:
            self._shown[job.id] = job
        else:
            self._shown.pop(job.id, None)
        return job

    async def _fill(self, job: Job, record: JobRecord) -> None:
        job.state = JobState(record.state)
        job.error = record.error
        job.started_at = record.started_at
        job.finished_at = record.finished_at
        sums = await self._cluster.progress(record.id)
        _, errors = await self._cluster.errors(record.id, 0, _ERRORS_SHOWN)
        snapshot = JobProgress().snapshot(0)
        counters = {**snapshot["counters"], **sums["counters"]}
        elapsed = ((record.finished_at or time.time()) - record.started_at) if record.started_at else 0.0
        done = counters["done"]
        job.saved_progress = {
            **snapshot,
            "counters": counters,
            "files_done": done,
            "elapsed_s": round(elapsed, 3),
            "files_per_s": round(done / elapsed, 2) if elapsed > 0 else 0.0,
            "scan_complete": sums["scan_complete"],
            "partitions": sums["partitions"],
            "errors": [{"path": p, "stage": s, "reason": r} for p, s, r, _ in errors],
        }

    async def _refresh_loop(self) -> None:
        """Keep the Job objects of active jobs current (an event stream watches one object)."""
        while True:
            await asyncio.sleep(_REFRESH_S)
            for job_id in list(self._shown):
                try:
                    record = await self._cluster.job(job_id)
                    if record is not None:
                        await self._job(record)
                except Exception:  # PostgreSQL restarting: shown as it was, refreshed next time
                    log.warning("cluster_job_refresh_failed", job_id=job_id, exc_info=True)


def _unsupported(root: Root, options: dict[str, Any]) -> str | None:
    """What the distributed mode does not run (it ingests folders every worker mounts at the same path)."""
    if isinstance(root, S3Prefix):
        return "object-store roots are ingested on one machine, not across workers (README: Many machines)"
    if options.get("watch") or options.get("kind") in ("stream", "reanalyze") or options.get("source"):
        return "watched folders, streams, URL and text jobs run on one machine (README: Many machines)"
    return None
