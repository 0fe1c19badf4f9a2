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


async def prune(ctx: PipelineContext, seen: SeenFiles) -> int:
    """Remove what the index holds under the root that the scan did not see. Returns files pruned."""
    collection = ctx.collection
    gone: dict[str, tuple[int, set[str]]] = {}
    removing: dict[str, int] = {}
    forget: list[tuple[str, str]] = []
    for directory in await ctx.index.directories_under(collection, str(ctx.root)):
        if seen.protected(directory):
            continue
        present = seen.names.get(directory, set())
        for name, row in (await ctx.index.lookup_dir(collection, directory)).items():
            if name in present:
                continue
            forget.append((directory, name))
            if not row.content_hash:
                continue  # a file that was not media: it owned no points
            gone.setdefault(row.content_hash, (row.chunks, set()))[1].add(os.path.join(directory, name))
            removing[row.content_hash] = removing.get(row.content_hash, 0) + 1
    if forget:
        await release_paths(ctx, gone, removing)
        await ctx.index.forget(collection, forget)
    return len(forget)
