"""Stage 4: batched, durable writes to the vector store; only then are files marked done.

Paths are merged, never overwritten: a point lists a sample of the paths its content was found at (the
file index has them all). A duplicate (PathLink) whose first copy is still in flight is parked in the file
index (on disk: a tree of copies must not fill memory) until that copy's points are written. A file whose
content changed has its path removed from the old points, and the old points are deleted when no indexed
path holds that content any more.

A batch's write and its "done" marks are one unit: cancellation waits for the unit in flight, so what is
stored is also marked done and nothing is written twice after a cancel.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

from orchestrator.file_index import IndexedFile
from orchestrator.ids import point_id
from orchestrator.people import PeopleIndex
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import SENTINEL, AnalyzedFile, FileEntry, PathLink
from orchestrator.pipeline.records import build_points, path_fields

# Duplicate paths are added to their points in writes of this many links (and at the end). Each payload
# update makes a new version of the point in the engine until it is optimised: writing per link batch
# made memory grow with the number of copies (bench_reingest: +108 % RSS at 100k files, 1k distinct).
LINK_FLUSH = 8192
# A partly filled write batch waits this long for more points: a durable Edge upsert of 256 points
# takes ~10-13 ms, so batching, not this wait, sets throughput; waiting longer only delays "done" marks.
LINGER_S = 0.1

_Done = tuple[FileEntry, str, int]  # entry, content hash, chunk count


class UpsertStage:
    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        self._chunks: dict[str, int] = {}  # content hash -> chunk count, for contents written by this job
        self._parked: set[str] = set()  # contents with duplicates parked in the index until they are written
        self._ready: list[PathLink] = []  # links whose content is written, to add in the next flush
        self.people = people_index(ctx)

    async def run(self, in_q: asyncio.Queue[object], n_upstream: int) -> None:
        await self._ctx.index.unpark(self._ctx.job_id, None)  # left by a run of this job that crashed
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
                await _uncancellable(self._write(batch))
        if self._ready:
            await _uncancellable(self._write([]))
        for _, directory, name, *_stat in await self._ctx.index.unpark(self._ctx.job_id, None):
            self._ctx.progress.fail(
                os.path.join(directory, name),
                "upsert",
                "same content as another file, which failed to process",
            )

    async def _write(self, batch: list[AnalyzedFile | PathLink]) -> None:
        ctx = self._ctx
        files = [b for b in batch if isinstance(b, AnalyzedFile)]
        links = [b for b in batch if isinstance(b, PathLink)]
        with ctx.progress.busy("upsert", len(batch)):
            done: list[_Done] = []
            if files:
                done.extend(await self._write_files(files))
            parked = []
            for link in links:
                if link.content_hash in self._chunks:
                    self._ready.append(link)
                else:
                    e = link.entry
                    parked.append((link.content_hash, e.directory, e.name, e.size, e.mtime_ns, e.inode))
                    self._parked.add(link.content_hash)
            await ctx.index.park(ctx.job_id, parked)
            if self._ready and (len(self._ready) >= LINK_FLUSH or not batch):
                linked, self._ready = self._ready, []
                done.extend(await self._link(linked))
            retry = {f.prepared.entry.path for f in files if f.partial}
            await ctx.index.mark_done(
                ctx.collection, [_indexed(e, h, n) for e, h, n in done if e.path not in retry]
            )
            ctx.progress.add("done", len(done))
            await self._release_previous(
                [f.prepared.entry for f in files] + [link.entry for link in links],
                [f.prepared.previous for f in files] + [link.previous for link in links],
            )

    async def _write_files(self, files: list[AnalyzedFile]) -> list[_Done]:
        ctx = self._ctx
        existing = await ctx.store.retrieve(ctx.collection, [f.prepared.point_ids[0] for f in files])
        unparked: dict[str, list[FileEntry]] = defaultdict(list)
        waited_for = [f.prepared.content_hash for f in files if f.prepared.content_hash in self._parked]
        for content_hash, directory, name, size, mtime, inode in await ctx.index.unpark(
            ctx.job_id, waited_for
        ):
            path = os.path.join(directory, name)
            unparked[content_hash].append(FileEntry(path, directory, name, size, mtime, inode))
        self._parked.difference_update(waited_for)
        assigned = await self.people.assign(files)  # faces and voices first: a re-run re-finds them
        points = []
        for f in files:
            prepared = f.prepared
            paths = {prepared.entry.path}
            paths.update(existing.get(prepared.point_ids[0], {}).get("paths", []))
            paths.update(e.path for e in unparked.get(prepared.content_hash, []))
            points.extend(build_points(f, sorted(paths), ctx.config.models_signature, assigned))
        await ctx.store.upsert(ctx.collection, points)
        ctx.progress.add("upsert_requests")
        ctx.progress.add("upserted", len(points))
        done: list[_Done] = []
        for f in files:
            prepared = f.prepared
            self._chunks[prepared.content_hash] = len(prepared.chunks)
            done.append((prepared.entry, prepared.content_hash, len(prepared.chunks)))
            done.extend(
                (entry, prepared.content_hash, len(prepared.chunks))
                for entry in unparked.pop(prepared.content_hash, [])
            )
        return done

    async def _link(self, links: list[PathLink]) -> list[_Done]:
        """Add duplicate paths to their content's stored points, in one write."""
        ctx = self._ctx
        by_hash: dict[str, set[str]] = defaultdict(set)
        for link in links:
            by_hash[link.content_hash].add(link.entry.path)
        stored = await ctx.store.retrieve(ctx.collection, [point_id(h, 0) for h in by_hash])
        updates = {}
        for content_hash, new_paths in by_hash.items():
            listed = stored.get(point_id(content_hash, 0), {}).get("paths", [])
            fields = path_fields(new_paths | set(listed))
            if fields["paths"] == listed:
                continue  # the point's sample of paths is full and unchanged: nothing to write
            for index in range(self._chunks[content_hash]):
                updates[point_id(content_hash, index)] = fields
        await ctx.store.set_payloads(ctx.collection, updates)
        return [(link.entry, link.content_hash, self._chunks[link.content_hash]) for link in links]

    async def _release_previous(self, entries: list[FileEntry], previous: list[IndexedFile | None]) -> None:
        """A path whose content changed no longer belongs to its old points."""
        ctx = self._ctx
        gone: dict[str, tuple[int, set[str]]] = {}
        for entry, prev in zip(entries, previous, strict=True):
            if prev is not None:
                gone.setdefault(prev.content_hash, (prev.chunks, set()))[1].add(entry.path)
        await release_paths(ctx, gone)


async def release_paths(ctx: PipelineContext, gone: dict[str, tuple[int, set[str]]]) -> None:
    """Remove paths from the points of the given contents (hash -> (chunks, paths)); delete the points of a
    content no other indexed path holds. The index may still list the removed paths (pruning updates the
    store first, then the index, so a crash between the two only repeats the prune)."""
    if not gone:
        return
    delete: list[str] = []
    deleted: list[str] = []
    updates = {}
    held = await ctx.index.paths_of(ctx.collection, list(gone))
    for content_hash, (chunks, paths) in gone.items():
        ids = [point_id(content_hash, i) for i in range(chunks)]
        remaining = [p for p in held.get(content_hash, []) if p not in paths]
        if not remaining:
            delete.extend(ids)
            deleted.append(content_hash)
            continue
        for pid in ids:
            updates[pid] = path_fields(remaining)
    await people_index(ctx).forget(deleted)  # faces and voices first: a crash leaves points to retry from
    await ctx.store.delete(ctx.collection, delete)
    await ctx.store.set_payloads(ctx.collection, updates)


def people_index(ctx: PipelineContext) -> PeopleIndex:
    config = ctx.config
    return PeopleIndex(
        ctx.store, ctx.collection, config.face_cluster_threshold, config.voice_cluster_threshold
    )


async def _uncancellable(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to the end even if this task is cancelled meanwhile; then let the cancellation through."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


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
