"""Files gone from the tree: after a complete scan of a root, their paths leave the points that listed
them, and points no remaining path holds are deleted. The scanner names what is gone (it compares each
directory's listing with its index rows, and finds indexed directories it never reached); directories it
could not list are left alone, since their files may still exist."""

from __future__ import annotations

import os

from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.stages.upsert import release_paths


async def prune(ctx: PipelineContext, gone_files: list[tuple[str, str]]) -> int:
    """Remove these (directory, name) files from the points and the index. Returns files pruned."""
    rows = await ctx.index.rows(ctx.collection, gone_files)
    gone: dict[str, tuple[int, set[str]]] = {}
    for row in rows:
        if row.content_hash:  # a file that was not media owned no points: only its row goes
            gone.setdefault(row.content_hash, (row.chunks, set()))[1].add(
                os.path.join(row.directory, row.name)
            )
    if rows:
        await release_paths(ctx, gone)
        await ctx.index.forget(ctx.collection, [(row.directory, row.name) for row in rows])
    return len(rows)
