"""Files gone from the tree: after a complete scan of a root, their paths leave the points that listed
them, and points no remaining path holds are deleted. Directories that could not be listed are left
alone (their files may still exist)."""

from __future__ import annotations

import os

from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.stages.upsert import release_paths


class SeenFiles:
    """What one scan saw, by directory: every regular file, failed or not, and unlistable directories."""

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}
        self.unlisted: set[str] = set()

    def add(self, directory: str, names: list[str]) -> None:
        self.names.setdefault(directory, set()).update(names)

    def add_path(self, path: str) -> None:
        self.add(os.path.dirname(path), [os.path.basename(path)])

    def protected(self, directory: str) -> bool:
        return any(directory == d or directory.startswith(d.rstrip("/") + "/") for d in self.unlisted)

    def present(self, directory: str, name: str) -> bool:
        """Seen by this scan, or under a directory it could not list (so maybe still there).
        Called from the index's thread once the scan is over: the sets no longer change."""
        names = self.names.get(directory)
        if names is not None and name in names:
            return True
        return bool(self.unlisted) and self.protected(directory)


async def prune(ctx: PipelineContext, seen: SeenFiles) -> int:
    """Remove what the index holds under the root that the scan did not see. Returns files pruned."""
    counters = ctx.progress.counters
    indexed_now = counters["done"] - counters["failed"]  # unchanged, stored and not-media files
    if await ctx.index.count_under(ctx.collection, str(ctx.root)) == indexed_now:
        return 0  # every row under the root is a file this scan saw: nothing to look for
    gone: dict[str, tuple[int, set[str]]] = {}
    missing = await ctx.index.missing_under(ctx.collection, str(ctx.root), seen.present)
    for row in missing:
        if row.content_hash:  # a file that was not media owned no points: only its row goes
            gone.setdefault(row.content_hash, (row.chunks, set()))[1].add(
                os.path.join(row.directory, row.name)
            )
    if missing:
        await release_paths(ctx, gone)
        await ctx.index.forget(ctx.collection, [(row.directory, row.name) for row in missing])
    return len(missing)
