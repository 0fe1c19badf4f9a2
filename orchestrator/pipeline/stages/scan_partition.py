"""Stage 1 of a distributed worker's pass: one partition's files (orchestrator/distributed/), not a walk.

The scan task that made the partition already listed the directory and left out what the shared index has as
unchanged; this stage lists the directory once more (one scandir, in a thread) and hands on the partition's
names that are still there, each judged by the same `visit_entry` as a whole walk (symlinks, devices, names
that are not UTF-8), with its row in the shared index when it had one (so a changed file's old content
releases its points). A name no longer in the directory is a failure of the scan stage: it went between the
scan task and this pass. Nothing is named gone here (pruning is the single machine's, see README).
"""

from __future__ import annotations

import asyncio
import os
import time

from orchestrator.pipeline.context import PartitionScan, PipelineContext
from orchestrator.pipeline.messages import SENTINEL, DirBatch, ScanFailure, ScanQueue
from orchestrator.pipeline.stages.scan import visit_entry

# Entries per message: small enough that a pause or a stop takes effect within a few files' time.
PARTITION_BATCH = 32


async def partition_scan_stage(
    ctx: PipelineContext, partition: PartitionScan, out_q: ScanQueue, n_downstream: int
) -> None:
    started = time.perf_counter()
    batches = await asyncio.to_thread(_list, ctx, partition)
    ctx.progress.stages["scan"].busy_s += time.perf_counter() - started
    control = ctx.control
    for batch in batches:
        await control.running.wait()
        if control.stop_flag.is_set():
            break
        await out_q.put([batch])
    else:
        ctx.progress.scan_complete = True
    for _ in range(n_downstream):
        await out_q.put(SENTINEL)


def _list(ctx: PipelineContext, partition: PartitionScan) -> list[DirBatch]:
    directory = partition.directory
    wanted = set(partition.names)
    batches: list[DirBatch] = []
    batch = DirBatch(directory, [])
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name not in wanted:
                    continue
                wanted.discard(entry.name)
                before = len(batch.entries)
                visit_entry(ctx, directory, entry, [], batch.entries, batch.failures)
                if len(batch.entries) > before and (row := partition.known.get(entry.name)) is not None:
                    batch.known[entry.name] = row
                if len(batch.entries) + len(batch.failures) >= PARTITION_BATCH:
                    batches.append(batch)
                    batch = DirBatch(directory, [])
    except OSError as exc:
        reason = f"cannot list directory: {exc.strerror or exc}"
        batch.failures.extend(ScanFailure(os.path.join(directory, n), reason) for n in sorted(wanted))
        wanted.clear()
    batch.failures.extend(
        ScanFailure(os.path.join(directory, name), "gone before it was read") for name in sorted(wanted)
    )
    if batch.entries or batch.failures:
        batches.append(batch)
    return batches
