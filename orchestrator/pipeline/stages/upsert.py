"""Stage 4: batched, durable writes to the vector store; only then are files marked done.

Paths are merged, never overwritten: a point lists every path its content was found at (this job's
duplicates, earlier jobs' copies). A duplicate whose first copy is still in flight waits here until that
copy's point is written. A file whose content changed has its path removed from the old points, and the
old points deleted when no indexed path holds that content any more.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from orchestrator.file_index import IndexedFile
from orchestrator.ids import point_id
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import SENTINEL, AnalyzedFile, FileEntry, PathLink
from orchestrator.pipeline.records import build_points, path_fields

# A partly filled write batch waits this long for more points: Edge upserts ~12k points/s, so the
# batch, not the wait, dominates; waiting longer only delays "done" marks.
LINGER_S = 0.1


class UpsertStage:
    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        self._written: set[str] = set()  # point ids written by this job
        self._waiting: dict[str, list[PathLink]] = defaultdict(list)  # first point id -> links

    async def run(self, in_q: asyncio.Queue[object], n_upstream: int) -> None:
        sentinels = 0
        while sentinels < n_upstream:
            batch: list[AnalyzedFile | PathLink] = []
            points = 0
            item = await in_q.get()
            deadline = time.monotonic() + LINGER_S
            while True:
                if item is SENTINEL:
                    sentinels += 1
                    if sentinels == n_upstream:
                        break
                else:
                    assert isinstance(item, AnalyzedFile | PathLink)
                    batch.append(item)
                    points += len(item.chunks) if isinstance(item, AnalyzedFile) else 0
                if points >= self._ctx.config.upsert_batch:
                    break
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        in_q.get_nowait() if remaining <= 0 else await asyncio.wait_for(in_q.get(), remaining)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            if batch:
                await self._write(batch)
        for links in self._waiting.values():
            for link in links:
                self._ctx.progress.fail(
                    link.entry.path, "upsert", "same content as another file, which failed to process"
                )

    async def _write(self, batch: list[AnalyzedFile | PathLink]) -> None:
        ctx = self._ctx
        files = [b for b in batch if isinstance(b, AnalyzedFile)]
        links = [b for b in batch if isinstance(b, PathLink)]
        with ctx.progress.busy("upsert", len(batch)):
            done: list[tuple[FileEntry, str, int]] = []
            if files:
                ids = [pid for f in files for pid in f.prepared.point_ids]
                existing = await ctx.store.retrieve(ctx.collection, ids)
                points = []
                for f in files:
                    first_id = f.prepared.point_ids[0]
                    paths = {f.prepared.entry.path}
                    paths.update(existing.get(first_id, {}).get("paths", []))
                    paths.update(link.entry.path for link in self._waiting.get(first_id, []))
                    points.extend(build_points(f, sorted(paths), ctx.config.models_signature))
                await ctx.store.upsert(ctx.collection, points)
                ctx.progress.add("upsert_requests")
                ctx.progress.add("upserted", len(points))
                self._written.update(ids)
                for f in files:
                    done.append((f.prepared.entry, f.prepared.content_hash, len(f.prepared.chunks)))
                    for link in self._waiting.pop(f.prepared.point_ids[0], []):
                        done.append((link.entry, link.content_hash, len(link.point_ids)))
            if links:
                done.extend(await self._link(links))
            await ctx.index.mark_done(ctx.collection, [_indexed(e, h, n) for e, h, n in done])
            await self._release_previous(files, links)

    async def _link(self, links: list[PathLink]) -> list[tuple[FileEntry, str, int]]:
        """Add duplicate paths to stored points; park those whose first copy is not written yet."""
        ctx = self._ctx
        existing = await ctx.store.retrieve(ctx.collection, [link.point_ids[0] for link in links])
        by_point: dict[str, set[str]] = {}
        ready: list[PathLink] = []
        for link in links:
            first = link.point_ids[0]
            if first not in existing:
                self._waiting[first].append(link)
                continue
            by_point.setdefault(first, set(existing[first].get("paths", []))).add(link.entry.path)
            ready.append(link)
        for link in ready:
            for pid in link.point_ids:
                await ctx.store.set_payload(
                    ctx.collection, [pid], path_fields(sorted(by_point[link.point_ids[0]]))
                )
        return [(link.entry, link.content_hash, len(link.point_ids)) for link in ready]

    async def _release_previous(self, files: list[AnalyzedFile], links: list[PathLink]) -> None:
        """A path whose content changed no longer belongs to its old points."""
        ctx = self._ctx
        for entry, previous in [(f.prepared.entry, f.prepared.previous) for f in files] + [
            (link.entry, link.previous) for link in links
        ]:
            if previous is None:
                continue
            old_ids = [point_id(previous.content_hash, i) for i in range(previous.chunks)]
            if await ctx.index.count_hash(ctx.collection, previous.content_hash) == 0:
                await ctx.store.delete(ctx.collection, old_ids)
                continue
            stored = await ctx.store.retrieve(ctx.collection, old_ids[:1])
            remaining = [p for p in stored.get(old_ids[0], {}).get("paths", []) if p != entry.path]
            for pid in old_ids:
                await ctx.store.set_payload(ctx.collection, [pid], path_fields(remaining))


def _indexed(entry: FileEntry, content_hash: str, chunks: int) -> IndexedFile:
    return IndexedFile(
        directory=entry.directory,
        name=entry.name,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        inode=entry.inode,
        content_hash=content_hash,
        chunks=chunks,
    )
