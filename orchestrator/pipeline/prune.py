"""Files gone from the tree: after a complete scan of a root, their paths leave the points that listed
them, and points no remaining path holds are deleted. The scanner names what is gone (it compares each
directory's listing with its index rows, and finds indexed directories it never reached); directories it
could not list are left alone, since their files may still exist. A watching job's pass over a few
directories (its `ScanScope`) names files gone only in the directories it listed (stages/scan.py), so its
prune never touches the others.

The gone files wait in the file index (the job's `gone` rows), and are pruned a page at a time: memory and
every statement's bound values stay the same size however many files went (one IN list over every gone
hash broke past SQLite's variable limit)."""

from __future__ import annotations

import os

from orchestrator.pipeline.context import PipelineContext
from orchestrator.points import PointKeeper

# Gone files pruned per page: each page is one durable delete in the store (~30 ms on Edge whatever its
# size), and the index slices its statements itself (file_index.MAX_BOUND).
PRUNE_PAGE = 4096


async def prune(ctx: PipelineContext, page: int = PRUNE_PAGE) -> int:
    """Remove the files this job's scan found gone from the points and the index. Returns files pruned."""
    pruned = 0
    after = 0
    points = ctx.point_keeper(ctx.people_index())
    while files := await ctx.index.gone_page(ctx.job_id, after, page):
        after = files[-1][0]
        pruned += await _prune_page(ctx, points, [(directory, name) for _, directory, name in files])
    return pruned


async def _prune_page(ctx: PipelineContext, points: PointKeeper, gone_files: list[tuple[str, str]]) -> int:
    """Store first, then index: a crash between the two only repeats the prune (releasing is idempotent)."""
    rows = await ctx.index.rows(ctx.collection, gone_files)
    gone: dict[str, tuple[int, set[str]]] = {}
    for row in rows:
        if row.content_hash:  # a file that was not media owned no points: only its row goes
            gone.setdefault(row.content_hash, (row.chunks, set()))[1].add(
                os.path.join(row.directory, row.name)
            )
    if rows:
        await points.release(gone)
        await ctx.index.forget(ctx.collection, [(row.directory, row.name) for row in rows])
    return len(rows)
