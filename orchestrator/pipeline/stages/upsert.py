"""Stage 4: batched, durable writes to the vector store; only then are files marked done.

Paths are merged, never overwritten: a point lists a sample of the paths its content was found at (the
file index has them all). A duplicate (PathLink) whose first copy is still in flight is parked in the file
index (on disk: a tree of copies must not fill memory) until that copy's points are written; which
contents this job has written is kept there too (a TEMP table), not in memory. A file whose content
changed has its path removed from the old points, and the old points are deleted when no indexed path
holds that content any more.

A batch is one unit: its points are written, then ONE index transaction marks its files done and records
what they owe their old contents (`releases`), then the old points are released and the debt is cleared.
A crash or a store error after the transaction leaves the debt recorded, and the next job on the
collection (a resumed one at start-up first of all) pays it before anything else
(`PointKeeper.pay_recorded`, from `settle`, before the stages start), so an old content's points never keep
listing a path that holds another content. A unit also records, BEFORE its writes, what each path it puts
on a content's points would owe that content (the same `releases` rows; its done mark deletes them): a
write that is stored but never marked done (a crash, a store that applied a write and then failed) is
taken back by the next job even when its file is gone or changed by then, instead of a point listing a
path that never held it. Cancellation (any number of
times) waits for the unit in flight, so what is stored is also marked done and released.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any, TypeVar

from orchestrator.clients.vectors import PointRecord
from orchestrator.file_index import IndexedFile, Release
from orchestrator.ids import point_id
from orchestrator.logs import get_logger
from orchestrator.people import ChunkPeople
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import SENTINEL, AnalyzedFile, FileEntry, InferQueue, PathLink, plan_kind
from orchestrator.pipeline.records import build_points
from orchestrator.points import path_fields

log = get_logger(__name__)
_T = TypeVar("_T")

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
        self._ready: list[PathLink] = []  # links whose content is written, to add in the next flush (bounded)
        self.people = ctx.people_index()
        self._points = ctx.point_keeper(self.people)

    async def settle(self) -> None:
        """Before the stages start (no content of this run claimed yet): drop what a crashed run of this
        job parked, pay what a crash or a store error left owed."""
        await self._ctx.index.unpark(self._ctx.job_id, None)
        await uncancellable(self._points.pay_recorded())

    async def run(self, in_q: InferQueue, n_upstream: int) -> None:
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
                await uncancellable(self._write(batch))
        if self._ready:
            await uncancellable(self._write([]))
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
            written = await ctx.index.written(ctx.job_id, [link.content_hash for link in links])
            parked = []
            for link in links:
                if link.content_hash in written:
                    self._ready.append(link)
                else:
                    e = link.entry
                    parked.append((link.content_hash, e.directory, e.name, e.size, e.mtime_ns, e.inode))
            await ctx.index.park(ctx.job_id, parked)
            if self._ready and (len(self._ready) >= LINK_FLUSH or not batch):
                linked, self._ready = self._ready, []
                done.extend(await self._link(linked))
            retry = {f.prepared.entry.path for f in files if f.partial}
            owed = _releases(
                [(f.prepared.entry, f.prepared.previous) for f in files]
                + [(link.entry, link.previous) for link in links]
            )
            marked = [_indexed(e, h, n) for e, h, n in done if e.path not in retry]
            await ctx.index.mark_done(ctx.collection, marked, owed)
            if ctx.checkpoint is not None:  # a distributed worker's commit (raises if it lost the partition)
                await ctx.checkpoint.files_done(marked)
            ctx.progress.add("done", len(done))
            await self._points.pay(owed)

    async def _write_files(self, files: list[AnalyzedFile]) -> list[_Done]:
        ctx = self._ctx
        existing = await ctx.store.retrieve(ctx.collection, [f.prepared.point_ids[0] for f in files])
        unparked: dict[str, list[FileEntry]] = defaultdict(list)
        for content_hash, directory, name, size, mtime, inode in await ctx.index.unpark(
            ctx.job_id, [f.prepared.content_hash for f in files]
        ):
            path = os.path.join(directory, name)
            unparked[content_hash].append(FileEntry(path, directory, name, size, mtime, inode))
        chunks = [
            ChunkPeople(f.prepared.content_hash, index, analysis.faces, analysis.turns)
            for f in files
            for index, analysis in sorted(f.chunks.items())
        ]
        await self._owe_until_done(
            [
                (f.prepared.content_hash, len(f.prepared.chunks), entry.path)
                for f in files
                for entry in [f.prepared.entry, *unparked.get(f.prepared.content_hash, [])]
            ]
        )
        assigned = await self.people.assign(chunks)  # faces and voices first: a re-run re-finds them
        identities = await self.people.identities()  # names, merges and links users made
        records = []
        for f in files:
            prepared = f.prepared
            paths = {prepared.entry.path}
            paths.update(existing.get(prepared.point_ids[0], {}).get("paths", []))
            paths.update(e.path for e in unparked.get(prepared.content_hash, []))
            media_type = f.prepared.media.media_type
            plan = None if media_type == "image" else ctx.config.plans.get(plan_kind(media_type))
            records.append((f, sorted(paths), plan))
        signature = ctx.config.models_signature

        def build() -> list[PointRecord]:
            return [
                p
                for f, paths, plan in records
                for p in build_points(f, paths, signature, assigned, plan, identities)
            ]

        # The keyword analysis (stemming) costs ~0.3 ms a chunk: ~70 ms a batch, off the event loop.
        points = await asyncio.to_thread(build)
        await ctx.store.upsert(ctx.collection, points)
        await self.people.settle(points)  # users renamed or merged people meanwhile: these follow
        ctx.progress.add("upsert_requests")
        ctx.progress.add("upserted", len(points))
        await ctx.index.add_written(
            ctx.job_id, [(f.prepared.content_hash, len(f.prepared.chunks)) for f in files]
        )
        done: list[_Done] = []
        for f in files:
            prepared = f.prepared
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
        chunks = await ctx.index.written(ctx.job_id, list(by_hash))
        stored = await ctx.store.retrieve(ctx.collection, [point_id(h, 0) for h in by_hash])
        updates = {}
        for content_hash, new_paths in by_hash.items():
            listed = stored.get(point_id(content_hash, 0), {}).get("paths", [])
            fields = path_fields(new_paths | set(listed))
            if fields["paths"] == listed:
                continue  # the point's sample of paths is full and unchanged: nothing to write
            for index in range(chunks[content_hash]):
                updates[point_id(content_hash, index)] = fields
        await self._owe_until_done(
            [(link.content_hash, chunks[link.content_hash], link.entry.path) for link in links]
        )
        await ctx.store.set_payloads(ctx.collection, updates)
        return [(link.entry, link.content_hash, chunks[link.content_hash]) for link in links]

    async def _owe_until_done(self, writes: list[Release]) -> None:
        """Record, before the store write that puts each path on its content's points, that the path owes
        them until its done mark (which deletes the record): paid by the next job if the mark never comes."""
        await self._ctx.index.mark_done(self._ctx.collection, [], writes)


def _releases(files: list[tuple[FileEntry, IndexedFile | None]]) -> list[Release]:
    """What paths whose content changed owe their old contents' points: to be left by them."""
    return [(prev.content_hash, prev.chunks, entry.path) for entry, prev in files if prev is not None]


async def uncancellable(work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work` to the end however often this task is cancelled meanwhile; then let the cancellation
    through. (anyio's shielded CancelScope does not stop asyncio's own Task.cancel, which TaskGroup and
    the job manager use: checked with anyio 4.16; hence this loop over asyncio.shield.)"""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():  # the work itself was cancelled, or ended as we were: nothing left to wait for
                if not task.cancelled():
                    task.exception()  # retrieved (the cancellation wins): no "never retrieved" warning
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


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
