"""`archivist worker`: one process of the distributed mode (README "Many machines").

It runs procrastinate's worker (WORKER_SLOTS tasks at once, a heartbeat every WORKER_HEARTBEAT_S) over two
tasks: a scan (one directory -> partitions and sub-scans, `listing.py`) and a partition (the same four-stage
pipeline as one machine, over the partition's files: `stages/scan_partition.py`, with this node's own result
cache, decode pool and scratch file index under its DATA_DIR, and the shared Qdrant server). Beside it:
- `_follow_jobs`: twice a second, the states of the jobs whose partitions run here; a pause or a cancel
  stops those passes (the files in flight finish and are committed, then the partition is released);
- `_reap`: every heartbeat, procrastinate's stalled jobs (their worker silent for WORKER_STALL_S: killed,
  frozen, cut off) are retried (`retry_job`), and a running partition whose task is no longer `doing` (a
  frozen worker woke up and finished it as failed) gets a new task. The next owner resumes at the
  partition's checkpoint; the old one's next checkpoint is refused (store.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import procrastinate
import procrastinate.worker
import psycopg
import structlog
from tenacity import AsyncRetrying, wait_exponential

from orchestrator.clients.ml import Capabilities
from orchestrator.config import Settings
from orchestrator.distributed.ledger import PartitionLedger
from orchestrator.distributed.listing import list_directory
from orchestrator.distributed.store import Claim, ClusterStore, StaleCheckpoint
from orchestrator.distributed.tasks import (
    PARTITION_TASK,
    QUEUE,
    SCAN_TASK,
    defer_partition,
    defer_scan,
    queue_app,
)
from orchestrator.logs import get_logger
from orchestrator.people import check_vector_sizes
from orchestrator.pipeline.context import JobControl, PartitionScan
from orchestrator.pipeline.negotiate import collection_spec, pipeline_config
from orchestrator.pipeline.progress import JobProgress
from orchestrator.pipeline.runner import run_pipeline
from orchestrator.services import Services

log = get_logger(__name__)

_FOLLOW_S = 0.5  # how often running passes look at their jobs' states (a pause takes effect within this)
_CAPS_TTL_S = 30.0  # capabilities are asked again after this (a replaced ML service)


class _QueueWorkerStopped(Exception):
    """procrastinate's worker returned without being asked to (a side task failed: PostgreSQL went away)."""


@dataclass(slots=True)
class _Pass:
    claim: Claim
    control: JobControl
    stopped: bool = False  # by a pause or a cancel (not by its end)


@dataclass(slots=True)
class Worker:
    settings: Settings
    services: Services
    store: ClusterStore
    app: procrastinate.App
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # The passes running, by (partition, attempt): after a freeze this worker may hold a stale attempt of a
    # partition beside a newer one it claimed again.
    _passes: dict[tuple[uuid.UUID, int], _Pass] = field(default_factory=dict)
    _queue_worker: procrastinate.worker.Worker | None = None
    _caps: tuple[float, Capabilities] | None = None
    _collections: set[str] = field(default_factory=set)

    def register(self) -> None:
        """Bind the two task names to this worker's methods."""

        @self.app.task(name=SCAN_TASK, queue=QUEUE)
        async def scan(job_id: str, directory: str) -> None:
            await self.scan(job_id, directory)

        @self.app.task(name=PARTITION_TASK, queue=QUEUE, pass_context=True)
        async def partition(context: procrastinate.JobContext, partition: str) -> None:
            await self.run_partition(uuid.UUID(partition), context.job.id)

    async def run(self) -> None:
        """Until SIGTERM/SIGINT: the passes running then finish first (graceful). procrastinate's worker stops
        by itself when PostgreSQL goes away (its heartbeat fails); it is started again, with backoff, until
        PostgreSQL is back: a restart of the database never ends a worker."""
        settings = self.settings
        stopping = asyncio.Event()
        current: list[procrastinate.worker.Worker] = []

        def stop() -> None:
            stopping.set()
            for queue_worker in current:
                queue_worker.stop()  # type: ignore[no-untyped-call]  # (procrastinate leaves it unannotated)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        follow = asyncio.create_task(self._follow_jobs())
        reap = asyncio.create_task(self._reap())
        log.info("worker_start", worker=self.name, slots=settings.worker_slots)
        try:
            async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10.0)):
                with attempt:
                    queue_worker = procrastinate.worker.Worker(
                        self.app,
                        queues=[QUEUE],
                        name=self.name,
                        concurrency=settings.worker_slots,
                        update_heartbeat_interval=settings.worker_heartbeat_s,
                        stalled_worker_timeout=settings.worker_stall_s,
                        fetch_job_polling_interval=1.0,
                        abort_job_polling_interval=settings.worker_heartbeat_s,
                        delete_jobs="successful",
                        install_signal_handlers=False,
                    )
                    current[:] = [queue_worker]
                    self._queue_worker = queue_worker
                    await queue_worker.run()  # type: ignore[no-untyped-call]
                    if not stopping.is_set():
                        raise _QueueWorkerStopped("the queue worker stopped (PostgreSQL unreachable?)")
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            follow.cancel()
            reap.cancel()
            await asyncio.gather(follow, reap, return_exceptions=True)
            log.info("worker_stop", worker=self.name)

    # -- scan ------------------------------------------------------------------------------------------------

    async def scan(self, job_id: str, directory: str) -> None:
        job = await self.store.job(job_id)
        if job is None or job.state not in ("running", "paused"):
            return
        with structlog.contextvars.bound_contextvars(job_id=job_id):
            known = await self.store.index_rows(job.physical, directory)
            settings = self.settings
            listing = await asyncio.to_thread(
                list_directory,
                directory,
                known,
                bool(job.options.get("include_hidden", settings.include_hidden)),
                settings.partition_files,
                settings.partition_bytes,
            )
            result = await self.store.finish_scan(
                job_id,
                directory,
                listing.partitions,
                listing.subdirectories,
                listing.unchanged,
                listing.failures,
            )
            if result is None:
                return
            partitions, subdirectories = result
            for sub in subdirectories:
                await defer_scan(self.app, job_id, sub)
            for pid in partitions:
                await defer_partition(self.app, pid)
            log.info(
                "scan_done",
                directory=directory,
                partitions=len(listing.partitions),
                subdirectories=len(listing.subdirectories),
                unchanged=listing.unchanged,
            )
            await self.store.maybe_complete(job_id)

    # -- partitions ------------------------------------------------------------------------------------------

    async def run_partition(self, pid: uuid.UUID, task_id: int | None) -> None:
        claim = await self.store.claim(pid, self.name, task_id)
        if claim is None:  # finished, cancelled, or its job paused (parked: resume queues it again)
            return
        job = claim.job
        with structlog.contextvars.bound_contextvars(
            job_id=job.id, partition=str(pid), attempt=claim.attempt
        ):
            try:
                await self._run_claimed(claim)
            except StaleCheckpoint as exc:
                log.warning("partition_taken_over", reason=str(exc))
            except psycopg.OperationalError:  # PostgreSQL gone past RECONNECT_S: the reaper requeues it
                log.exception("partition_interrupted")
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                owned = await self.store.fail_owned(claim, error)
                if not owned:  # a newer attempt owns it: this pass has no say on the job
                    log.warning(
                        "partition_taken_over", reason=f"its pass failed afterwards: {error}", exc_info=True
                    )
                    return
                log.exception("partition_failed")
                raise

    async def _run_claimed(self, claim: Claim) -> None:
        services = self.services
        job = claim.job
        names = tuple(n for n in claim.names if os.path.join(claim.directory, n) not in claim.settled)
        if not names:  # an earlier attempt settled every file: only the partition's end is left
            await PartitionLedger(self.store, claim, JobProgress()).finish()
            await self.store.maybe_complete(job.id)
            return
        caps = await self._capabilities()
        config = pipeline_config(self.settings, caps, job.options, reanalyze=True)
        collection = job.physical
        await self._ensure_collection(collection, caps)
        known = await self.store.index_rows(collection, claim.directory)
        progress = JobProgress()
        control = JobControl()
        ledger = PartitionLedger(self.store, claim, progress)
        ctx = services.pipeline_context(
            job_id=f"{job.id}:{claim.id}:{claim.attempt}",  # this pass's scratch rows in the local index
            root=Path(job.root),
            collection=collection,
            config=config,
            progress=progress,
            control=control,
            partition=PartitionScan(claim.directory, names, {n: known[n] for n in names if n in known}),
            checkpoint=ledger,
        )
        running = _Pass(claim, control)
        self._passes[claim.id, claim.attempt] = running
        started = time.perf_counter()
        try:
            await run_pipeline(ctx)
        finally:
            del self._passes[claim.id, claim.attempt]
        if running.stopped and not progress.scan_complete:
            await ledger.flush()
            state = await self.store.release(claim)
            log.info("partition_released", state=state)
            if state == "queued":  # resumed while it stopped
                await defer_partition(self.app, claim.id)
            return
        await ledger.finish()
        log.info(
            "partition_done",
            files=len(names),
            seconds=round(time.perf_counter() - started, 3),
            upserted=progress.counters["upserted"],
            busy_s={name: round(timer.busy_s, 3) for name, timer in progress.stages.items()},
        )
        await self.store.maybe_complete(job.id)

    async def _capabilities(self) -> Capabilities:
        now = time.monotonic()
        if self._caps is None or now - self._caps[0] > _CAPS_TTL_S:
            self._caps = (now, await self.services.ml.capabilities())
        return self._caps[1]

    async def _ensure_collection(self, collection: str, caps: Capabilities) -> None:
        if collection in self._collections:
            return
        await self.services.store.ensure_collection(collection, collection_spec(caps))
        await check_vector_sizes(self.services.store, collection, caps.models)
        self._collections.add(collection)

    # -- beside the tasks ------------------------------------------------------------------------------------

    async def _follow_jobs(self) -> None:
        while True:
            await asyncio.sleep(_FOLLOW_S)
            if not self._passes:
                continue
            try:
                states = await self.store.job_states({p.claim.job.id for p in self._passes.values()})
            except Exception:  # PostgreSQL restarting: the passes go on, asked again next time
                log.warning("job_states_unavailable", exc_info=True)
                continue
            for running in list(self._passes.values()):
                if states.get(running.claim.job.id, "cancelled") != "running" and not running.stopped:
                    running.stopped = True
                    running.control.stop()

    async def _reap(self) -> None:
        manager = self.app.job_manager
        stall_s = self.settings.worker_stall_s
        while True:
            await asyncio.sleep(self.settings.worker_heartbeat_s)
            try:
                for stalled in await manager.get_stalled_jobs(seconds_since_heartbeat=stall_s):
                    if stalled.worker_id is not None and stalled.worker_id == self._own_worker_id():
                        continue  # this worker's own, its heartbeat late (it was frozen): it still runs them
                    try:
                        await manager.retry_job(stalled)
                        log.warning("task_retried", task=stalled.id, name=stalled.task_name)
                    except Exception:  # another worker's reaper retried it first
                        log.info("task_retry_skipped", task=stalled.id, exc_info=True)
                for pid, task_id, status in await self.store.orphans(stall_s):
                    if status in ("doing", "todo"):
                        continue  # procrastinate's own retry above handles a doing task
                    await defer_partition(self.app, pid)
                    log.warning("partition_requeued", partition=str(pid), task=task_id, status=status)
            except Exception:
                log.warning("reap_failed", exc_info=True)

    def _own_worker_id(self) -> int | None:
        return None if self._queue_worker is None else self._queue_worker.worker_id


async def serve_worker(settings: Settings) -> None:
    """The `archivist worker` command's body."""
    if not settings.database_url:
        raise SystemExit("archivist worker needs DATABASE_URL (PostgreSQL) and QDRANT_URL (a Qdrant server)")
    if not settings.qdrant_url:
        raise SystemExit(
            "archivist worker needs QDRANT_URL: workers on several machines share one Qdrant server"
        )
    app = queue_app(settings.database_url)
    store = await ClusterStore.open(settings.database_url)
    services = await Services.open(settings)
    try:
        async with app.open_async():
            await store.apply_schema(app.schema_manager.apply_schema_async)
            worker = Worker(settings, services, store, app)
            worker.register()
            await worker.run()
    finally:
        await services.close()
        await store.close()
