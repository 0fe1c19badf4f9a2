"""Stage 1 for an object-store root (`s3://bucket/prefix`, `ctx.objects`): list it like a tree of
directories, download only what changed.

The prefix is walked like directories: one ListObjectsV2 with Delimiter "/" per "directory", a page (at
most 1000 keys) at a time, never the whole listing in memory (what is held: the "directories" not yet
listed, one directory's index rows, one page). Each directory is looked up in the file index as scan.py
does (directory `s3://bucket/dir`, name the key's last part), and an object is unchanged when its size,
LastModified and ETag (`sources.s3.etag_inode`, in the inode column) are the indexed ones: an unchanged
object is never downloaded. Indexed names missing from a directory's listing, and indexed directories
under the root the walk never reached, are named gone (pruned as files are). Hidden names follow
INCLUDE_HIDDEN / options.include_hidden; a remembered failure whose object did not change travels as a
`KnownFailure` (not downloaded again) unless retry_failed.

New and changed objects are downloaded by S3_DOWNLOAD_WORKERS tasks (the listed version, streamed a block
at a time: `ObjectStorage.download`) into the job's spool (`sources/spool.py`: a download waits while
S3_SPOOL_BYTES are held) and sent on as `FileEntry`s whose `path` is the object's s3:// URI and whose
`scratch` is the local copy: prepare reads the copy and releases it when done. Nothing downstream knows
more of the store. Blocking calls run on this pass's own threads (not the loop's default executor, which
API routes share).

A listing that fails (store unreachable, credentials refused, bucket missing or forbidden) fails the job:
the scan never completes, so nothing is pruned and what is indexed stays. An object that cannot be read
(changed while it was read, gone, denied) fails alone (not remembered: the next run tries it again).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from orchestrator.file_index import IndexedFile, KnownFailureRow, directories_under, lookup_dir_failures
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import (
    SENTINEL,
    DirBatch,
    FileEntry,
    KnownFailure,
    ScanFailure,
    ScanQueue,
    ScratchCopy,
)
from orchestrator.pipeline.stages.scan import SCAN_BATCH, UNCHANGED_BATCH
from orchestrator.sources.roots import key_problem
from orchestrator.sources.s3 import ListedObject, ObjectError, ObjectScan, etag_inode

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Download:
    entry: FileEntry
    listed: ListedObject
    row: IndexedFile | None  # the object's index row when it changed (prepare releases its old content)


async def s3_scan_stage(
    ctx: PipelineContext, objects: ObjectScan, out_q: ScanQueue, n_downstream: int
) -> None:
    await objects.spool.open()
    scanner = _ObjectScanner(ctx, objects, out_q)
    complete = await scanner.run()
    ctx.progress.scan_complete = complete and not ctx.control.stop_flag.is_set()
    for _ in range(n_downstream):
        await out_q.put(SENTINEL)


class _ObjectScanner:
    def __init__(self, ctx: PipelineContext, objects: ObjectScan, out_q: ScanQueue) -> None:
        self.ctx = ctx
        self.objects = objects
        self.out_q = out_q
        self._visited: set[str] = set()  # directories listed (for the gone ones), O(directories)
        self._abandon = threading.Event()  # this scan failed or was cancelled: downloads in threads stop
        self._executor = ThreadPoolExecutor(objects.downloads + 1, thread_name_prefix=f"s3-{ctx.job_id[:8]}")
        self._source = ctx.progress.source
        self._source.update(kind="s3", root=objects.prefix.uri)
        for counter in ("listed", "downloads", "downloaded_bytes"):
            self._source.setdefault(counter, 0)

    def _stopped(self) -> bool:
        """Seen by a download's thread between blocks."""
        return self._abandon.is_set() or self.ctx.control.stop_flag.is_set()

    async def _call(self, fn: Callable[..., _T], *args: object) -> _T:
        """A blocking store call on this scan's threads, counted as the scan stage's busy time."""
        loop = asyncio.get_running_loop()
        with self.ctx.progress.busy("scan"):
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _running(self) -> None:
        running = self.ctx.control.running
        if not running.is_set():
            await running.wait()  # paused: nothing new is listed or downloaded

    async def run(self) -> bool:
        """Walk the prefix with the downloads running beside it; True when every directory was listed."""
        downloads: asyncio.Queue[_Download | None] = asyncio.Queue(self.objects.downloads)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.objects.downloads):
                    group.create_task(self._downloader(downloads))
                complete = await self._walk(downloads)
                for _ in range(self.objects.downloads):
                    await downloads.put(None)
            return complete
        finally:
            self._abandon.set()
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _walk(self, downloads: asyncio.Queue[_Download | None]) -> bool:
        stack = [self.objects.prefix.key_prefix]
        while stack:
            if self.ctx.control.stop_flag.is_set():
                return False
            await self._directory(stack.pop(), stack, downloads)
        await self._vanished_directories()
        return True

    async def _directory(
        self, key_prefix: str, stack: list[str], downloads: asyncio.Queue[_Download | None]
    ) -> None:
        ctx, prefix = self.ctx, self.objects.prefix
        config = ctx.config
        directory = prefix.directory_uri(key_prefix)
        known = await ctx.index.lookup_dir(ctx.collection, directory)
        failed: dict[str, KnownFailureRow] | None = None  # remembered failures, read at the first changed
        seen: set[str] = set()  # indexed names met in the listing
        batch = DirBatch(directory, [])
        token: str | None = None
        while True:
            await self._running()
            page = await self._call(self.objects.storage.list_page, prefix, key_prefix, token)
            self._source["listed"] += len(page.objects)
            for sub in page.prefixes:
                name = sub[len(key_prefix) : -1]
                problem = key_problem(sub)
                if problem is not None:
                    batch.failures.append(ScanFailure(prefix.key_uri(sub), f"not ingested: {problem}", True))
                elif name[0] != "." or config.include_hidden:
                    stack.append(sub)
            for listed in page.objects:
                name = listed.key[len(key_prefix) :]
                if not name:
                    continue  # the "directory" itself (a zero-byte key ending in "/", as consoles make)
                if name[0] == "." and not config.include_hidden:
                    seen.add(name)  # as a hidden local file: neither read nor gone
                    continue
                problem = key_problem(listed.key)
                if problem is not None:
                    batch.failures.append(ScanFailure(prefix.key_uri(listed.key), f"not ingested: {problem}"))
                    continue
                row = known.get(name)
                inode = etag_inode(listed.etag)
                if row is not None:
                    seen.add(name)
                    if not config.reanalyze and (row.size, row.mtime_ns, row.inode) == (
                        listed.size,
                        listed.mtime_ns,
                        inode,
                    ):
                        batch.unchanged.append(name)
                        if len(batch.unchanged) >= UNCHANGED_BATCH:
                            batch = await self._put(batch)
                        continue
                entry = FileEntry(
                    prefix.key_uri(listed.key), directory, name, listed.size, listed.mtime_ns, inode
                )
                if not config.retry_failed:
                    if failed is None:
                        failed = await ctx.index.run(
                            lambda: lookup_dir_failures(ctx.index.conn, ctx.collection, directory)
                        )
                    noted = failed.get(name)
                    if noted is not None and (noted[0], noted[1], noted[2]) == (
                        entry.size,
                        entry.mtime_ns,
                        inode,
                    ):
                        batch.known_failures.append(KnownFailure(entry.path, noted[3], noted[4]))
                        continue
                await downloads.put(_Download(entry, listed, row))
            if len(batch.failures) + len(batch.known_failures) >= SCAN_BATCH:
                batch = await self._put(batch)
            if page.next_token is None:
                break
            token = page.next_token
        self._visited.add(directory)
        batch.gone.extend(name for name in known if name not in seen)
        await self._put(batch)

    async def _vanished_directories(self) -> None:
        """Indexed directories under the root that the walk never reached (every object of them deleted,
        or now hidden): all their files are gone."""
        ctx, top = self.ctx, self.objects.prefix.uri
        directories = await ctx.index.run(lambda: directories_under(ctx.index.conn, ctx.collection, top))
        for directory in directories:
            if directory not in self._visited:
                names = list(await ctx.index.lookup_dir(ctx.collection, directory))
                await self._put(DirBatch(directory, [], gone=names))

    async def _downloader(self, downloads: asyncio.Queue[_Download | None]) -> None:
        while (item := await downloads.get()) is not None:
            await self._running()
            await self._put(await self._download(item))

    async def _download(self, item: _Download) -> DirBatch:
        """The object's local copy as an entry for prepare, or its failure."""
        ctx, entry, spool = self.ctx, item.entry, self.objects.spool
        known = {entry.name: item.row} if item.row is not None else {}
        if entry.size == 0 or entry.size > ctx.config.max_file_bytes:
            return DirBatch(entry.directory, [entry], known=known)  # prepare judges it without reading it
        try:
            await spool.reserve(entry.size)
        except ValueError as exc:
            return DirBatch(entry.directory, [], [ScanFailure(entry.path, str(exc))])
        path = spool.new_path()
        try:
            copy = await self._call(
                self.objects.storage.download, self.objects.prefix.bucket, item.listed, path, self._stopped
            )
        except ObjectError as exc:
            await spool.unreserve(entry.size)
            return DirBatch(entry.directory, [], [ScanFailure(entry.path, str(exc))])
        except BaseException:
            await spool.unreserve(entry.size)
            raise
        self._source["downloads"] += 1
        self._source["downloaded_bytes"] += entry.size
        release = functools.partial(spool.release, copy.path, entry.size)
        scratch = ScratchCopy(str(copy.path), copy.device, copy.inode, release)
        return DirBatch(entry.directory, [replace(entry, scratch=scratch)], known=known)

    async def _put(self, batch: DirBatch) -> DirBatch:
        """Queue a batch that holds anything (blocking while the queue is full: backpressure). Returns a
        fresh batch for the same directory."""
        if batch.entries or batch.failures or batch.unchanged or batch.gone or batch.known_failures:
            await self._running()
            await self.out_q.put([batch])
        return DirBatch(batch.directory, [])
