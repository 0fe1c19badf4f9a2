"""Owns one job's pipeline: four stages joined by bounded queues, all in one asyncio.TaskGroup.

A stage's workers each end on one sentinel; when all of a stage's workers have ended, the stage sends
one sentinel per worker of the next stage. A stage that raises cancels its siblings (TaskGroup), the
scan thread sees the stop flag, and the error reaches the job as its failure reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from orchestrator.logs import get_logger
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import SENTINEL
from orchestrator.pipeline.prune import prune
from orchestrator.pipeline.stages.infer import InferStage
from orchestrator.pipeline.stages.prepare import PrepareStage
from orchestrator.pipeline.stages.scan import scan_stage
from orchestrator.pipeline.stages.upsert import UpsertStage

log = get_logger(__name__)

Worker = Callable[[asyncio.Queue[object], asyncio.Queue[object]], Coroutine[Any, Any, None]]


async def _workers(
    n: int, worker: Worker, in_q: asyncio.Queue[object], out_q: asyncio.Queue[object], n_downstream: int
) -> None:
    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(worker(in_q, out_q))
    for _ in range(n_downstream):
        await out_q.put(SENTINEL)


async def run_pipeline(ctx: PipelineContext) -> None:
    """Run the job's pipeline to the end; raises the first stage error (unwrapped from the group)."""
    config = ctx.config
    scanned: asyncio.Queue[object] = asyncio.Queue(config.queue_size)
    prepared: asyncio.Queue[object] = asyncio.Queue(config.queue_size)
    analyzed: asyncio.Queue[object] = asyncio.Queue(config.queue_size)
    ctx.progress.queues = {"scan->prepare": scanned, "prepare->infer": prepared, "infer->upsert": analyzed}
    ctx.progress.started_at = ctx.progress.started_at or time.time()
    prepare, infer, upsert = PrepareStage(ctx), InferStage(ctx), UpsertStage(ctx)
    log.info(
        "pipeline_start",
        root=str(ctx.root),
        collection=ctx.collection,
        infer_batch=config.infer_batch,
        upsert_batch=config.upsert_batch,
    )
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(scan_stage(ctx, scanned, config.prepare_workers))
            group.create_task(
                _workers(config.prepare_workers, prepare.worker, scanned, prepared, config.infer_workers)
            )
            group.create_task(_workers(config.infer_workers, infer.worker, prepared, analyzed, 1))
            group.create_task(upsert.run(analyzed, 1))
    except BaseExceptionGroup as group_error:
        first = _first_error(group_error)
        if first is not None:
            raise first from group_error
        raise
    finally:
        ctx.control.stop_flag.set()
    ctx.progress.add("people_merged", await upsert.people.merge())
    if config.prune and ctx.progress.scan_complete:
        ctx.progress.add("pruned", await prune(ctx, prepare.gone))
    log.info("pipeline_end", **ctx.progress.counters)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_error(exc)
            if inner is not None:
                return inner
        elif not isinstance(exc, asyncio.CancelledError):
            return exc
    return None
