"""Owns one job's pipeline: four stages joined by bounded queues, all in one asyncio.TaskGroup.

A stage's workers each end on one sentinel; when all of a stage's workers have ended, the stage sends
one sentinel per worker of the next stage. A stage that raises cancels its siblings (TaskGroup), the
scan thread sees the stop flag, and the error reaches the job as its failure reason. The job's scratch
rows in the file index (claims, written contents, gone files) are cleared before the stages start and
after the run, whatever its end (with the duplicates it still had parked); between the two, before the
stages, the upsert stage pays what earlier runs left owed (`UpsertStage.settle`). The scan stage walks a
local root (stages/scan.py) or lists an object-store prefix (stages/scan_s3.py, when `ctx.objects` is set;
its spool goes with the scratch).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from orchestrator.logs import get_logger
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import SENTINEL, End, InferQueue, PrepareQueue, ScanQueue
from orchestrator.pipeline.prune import prune
from orchestrator.pipeline.stages.infer import InferStage
from orchestrator.pipeline.stages.prepare import PrepareStage
from orchestrator.pipeline.stages.scan import scan_stage
from orchestrator.pipeline.stages.scan_partition import partition_scan_stage
from orchestrator.pipeline.stages.scan_s3 import s3_scan_stage
from orchestrator.pipeline.stages.upsert import UpsertStage

log = get_logger(__name__)


class _Ends(Protocol):
    """A queue that takes the sentinel (each typed queue of messages.py does)."""

    async def put(self, item: End, /) -> None: ...


async def _workers(
    n: int, worker: Callable[[], Coroutine[Any, Any, None]], out_q: _Ends, n_downstream: int
) -> None:
    """Run `n` copies of a stage's worker; when all have ended, one sentinel per downstream worker."""
    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(worker())
    for _ in range(n_downstream):
        await out_q.put(SENTINEL)


async def run_pipeline(ctx: PipelineContext) -> None:
    """Run the job's pipeline to the end; raises the first stage error (unwrapped from the group)."""
    config = ctx.config
    scanned: ScanQueue = asyncio.Queue(config.queue_size)
    prepared: PrepareQueue = asyncio.Queue(config.queue_size)
    analyzed: InferQueue = asyncio.Queue(config.queue_size)
    ctx.progress.queues = {"scan->prepare": scanned, "prepare->infer": prepared, "infer->upsert": analyzed}
    ctx.progress.started_at = ctx.progress.started_at or time.time()
    prepare, infer, upsert = PrepareStage(ctx), InferStage(ctx), UpsertStage(ctx)
    log.info(
        "pipeline_start",
        root=str(ctx.root) if ctx.objects is None else ctx.objects.prefix.uri,
        collection=ctx.collection,
        infer_batch=config.infer_batch,
        upsert_batch=config.upsert_batch,
    )
    await ctx.index.clear_job(ctx.job_id)  # left by a run of this job that crashed
    try:
        await upsert.settle()  # before any content of this run is claimed
        await _stages(ctx, prepare, infer, upsert, scanned, prepared, analyzed)
        await ctx.control.begin_finishing()  # (jobs.py: what pause and cancel do from here on)
        ctx.progress.add("people_merged", await upsert.people.merge())
        ctx.progress.add("people_linked", await upsert.people.link())
        if config.prune and ctx.progress.scan_complete:
            ctx.progress.add("pruned", await prune(ctx))
    finally:
        await asyncio.shield(_drop_scratch(ctx))
    log.info("pipeline_end", **ctx.progress.counters)


async def _drop_scratch(ctx: PipelineContext) -> None:
    """The run's rows in the file index: its TEMP scratch, and the duplicates it still has parked (a run
    that failed or was stopped never unparks them, and no other job reads them); an object-store pass's
    spool with any copy still in it."""
    await ctx.index.unpark(ctx.job_id, None)
    await ctx.index.clear_job(ctx.job_id)
    if ctx.objects is not None:
        await ctx.objects.spool.close()


async def _stages(
    ctx: PipelineContext,
    prepare: PrepareStage,
    infer: InferStage,
    upsert: UpsertStage,
    scanned: ScanQueue,
    prepared: PrepareQueue,
    analyzed: InferQueue,
) -> None:
    config = ctx.config
    try:
        async with asyncio.TaskGroup() as group:
            if ctx.partition is not None:  # a distributed worker's partition: its files only
                group.create_task(partition_scan_stage(ctx, ctx.partition, scanned, config.prepare_workers))
            elif ctx.objects is None:  # a local directory, or an object-store prefix
                group.create_task(scan_stage(ctx, scanned, config.prepare_workers))
            else:
                group.create_task(s3_scan_stage(ctx, ctx.objects, scanned, config.prepare_workers))
            group.create_task(
                _workers(
                    config.prepare_workers,
                    lambda: prepare.worker(scanned, prepared),
                    prepared,
                    config.infer_workers,
                )
            )
            group.create_task(
                _workers(config.infer_workers, lambda: infer.worker(prepared, analyzed), analyzed, 1)
            )
            group.create_task(upsert.run(analyzed, 1))
    except BaseExceptionGroup as group_error:
        first = _first_error(group_error)
        if first is not None:
            raise first from group_error
        raise
    finally:
        ctx.control.stop_flag.set()


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_error(exc)
            if inner is not None:
                return inner
        elif not isinstance(exc, asyncio.CancelledError):
            return exc
    return None
