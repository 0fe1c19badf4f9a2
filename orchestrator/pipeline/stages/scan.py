"""Stage 1: walk the tree with recursive scandir in ONE worker thread, with the stat fast path.

docs/performance-limits.md: a bare walk with stat does ~140k+ files/s; a thread hop or a cache round trip
per file costs 7x.
So the thread itself looks each directory up in the stat index (one query per directory, on its own
read-only connection) and passes on only what changed; an unchanged file costs a dict look-up and three
integer compares. Directory batches go to the bounded queue from the thread, which blocks while the
queue is full (backpressure), waits while the job is paused and stops when asked.

Symlinks never lead outside the root: a link to a file inside the root is followed, one to a directory is
not descended (its target is walked anyway when inside the root, and loops are impossible), and one that
points outside the root or nowhere is recorded as a failure. Each file's device and inode (of the link's
target, for a link) go with it: prepare opens only that file (see prepare.py).

A new or changed file whose failure the index remembers with the same size, mtime and inode is not sent
to be read again (unless the job has `retry_failed`): it travels as a `KnownFailure`, shown in the job's
errors.

A watching job's pass (`ctx.watch`, orchestrator/watch.py) may list only some directories (its
`ScanScope`): `shallow` ones alone, `deep` ones with their trees. Gone files are named only where the pass
looked: in a listed directory, and under a deep one (or a shallow one that no longer exists) for indexed
directories the walk did not reach; a scope directory that is not a real directory under the root now
(removed, or a symlink on the way) is not listed, so its indexed files are gone, as a whole walk would
find. And it leaves a new or changed file modified less than `settle_s` ago for a later pass (still being
written): not read, not gone, named in `ctx.watch.deferred`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import stat
import time
from pathlib import Path

from orchestrator.file_index import (
    KnownFailureRow,
    StatRow,
    directories_under,
    lookup_dir_failures,
    lookup_dir_stats,
    lookup_file,
)
from orchestrator.pipeline.context import PipelineContext, ScanScope
from orchestrator.pipeline.messages import SENTINEL, DirBatch, FileEntry, KnownFailure, ScanFailure, ScanQueue
from orchestrator.security import is_within

# Changed entries per message: lists amortise queue overhead (64-item puts ~25x faster:
# docs/performance-limits.md).
SCAN_BATCH = 256
# Unchanged files travel only as names (for pruning); a message carries up to this many.
UNCHANGED_BATCH = 8192
_PUT_POLL_S = 0.2


class _Stopped(Exception):
    pass


async def scan_stage(ctx: PipelineContext, out_q: ScanQueue, n_downstream: int) -> None:
    started = time.perf_counter()
    walker = _Walker(ctx, asyncio.get_running_loop(), out_q)
    try:
        await asyncio.to_thread(walker.walk)
        # Busy = time walking, not time blocked on a full queue or a pause.
        ctx.progress.stages["scan"].busy_s += time.perf_counter() - started - walker.waited
        ctx.progress.scan_complete = not ctx.control.stop_flag.is_set()
    except asyncio.CancelledError:
        # The thread must not outlive the job: it polls this flag whenever it waits.
        ctx.control.stop_flag.set()
        raise
    for _ in range(n_downstream):
        await out_q.put(SENTINEL)


class _Walker:
    """Everything the scan thread touches; nothing here is touched by the event loop meanwhile."""

    def __init__(self, ctx: PipelineContext, loop: asyncio.AbstractEventLoop, out_q: ScanQueue):
        self.ctx = ctx
        self.loop = loop
        self.out_q = out_q
        self.waited = 0.0  # seconds blocked on a full queue or a pause
        # Directories with nothing to do but unchanged names travel together: one loop wake-up per
        # UNCHANGED_BATCH names instead of one per directory (a re-scan of 1k directories: ~10 % faster).
        self._pending: list[DirBatch] = []
        self._pending_names = 0
        # For pruning, in O(directories) memory: which directories were listed, and which were not.
        self._visited: set[str] = set()
        self._unlisted: list[str] = []

    def walk(self) -> None:
        reader = self.ctx.index.reader()
        watch = self.ctx.watch
        try:
            if watch is None or watch.scope is None:
                self._tree(str(self.ctx.root), reader)
                self._vanished_directories(reader)
            else:
                self._scoped(watch.scope, reader)
            if self._pending:
                self._send()
        except _Stopped:
            return
        finally:
            reader.close()

    def _tree(self, top: str, reader: sqlite3.Connection) -> None:
        stack = [top]
        while stack:
            directory = stack.pop()
            if directory not in self._visited:  # (a scope's trees may overlap)
                self._directory(directory, stack, reader)

    def _scoped(self, scope: ScanScope, reader: sqlite3.Connection) -> None:
        """A watched folder's pass: its shallow directories listed alone, its deep ones walked; then indexed
        directories under a deep one (or a vanished shallow one) that the walk did not reach are gone."""
        root = self.ctx.root
        tops: list[str] = []
        for top in sorted(d for d in scope.deep if is_within(Path(d), root)):
            if self._listable(top):
                self._tree(top, reader)
            tops.append(top)
        for directory in sorted(d for d in scope.shallow if is_within(Path(d), root)):
            if directory in self._visited:  # walked with a deep one
                continue
            if self._listable(directory):
                self._directory(directory, [], reader)  # the subdirectories it finds are not entered
            else:
                tops.append(directory)
        self._vanished_directories(reader, tops)

    def _listable(self, directory: str) -> bool:
        """Whether a whole walk would list this directory of a scope: a real directory under the root, no
        symlink on the way. The root always is (failing to list it is recorded: never a reason to prune);
        a directory that cannot be looked at for another reason is too (its failure protects its files)."""
        if directory == str(self.ctx.root):
            return True
        try:
            st = os.lstat(directory)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True
        return stat.S_ISDIR(st.st_mode) and os.path.realpath(directory) == directory

    def _directory(self, directory: str, stack: list[str], reader: sqlite3.Connection) -> None:
        ctx = self.ctx
        hidden_ok = ctx.config.include_hidden
        fast_path = not ctx.config.reanalyze  # a re-analysis reads every indexed file again
        known: dict[str, StatRow] | None = None
        failed: dict[str, KnownFailureRow] | None = None  # remembered failures, read at the first new file
        matched = 0  # indexed names met in this listing: fewer than indexed means some are gone
        batch = DirBatch(directory, [], [], {}, [])
        unchanged = batch.unchanged
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    name = entry.name
                    if name[0] == "." and not hidden_ok:
                        continue
                    row = None
                    if not entry.is_dir(follow_symlinks=False):
                        if known is None:
                            known = lookup_dir_stats(reader, ctx.collection, directory)
                        row = known.get(name)
                    if row is not None:
                        matched += 1
                        # The hot path of a re-scan: positional compares, no object built per file.
                        if fast_path and entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            if row[0] == st.st_size and row[1] == st.st_mtime_ns and row[2] == st.st_ino:
                                unchanged.append(name)
                                if len(unchanged) >= UNCHANGED_BATCH:
                                    batch = self._put(batch)
                                    unchanged = batch.unchanged
                                continue
                        indexed = lookup_file(reader, ctx.collection, directory, name)  # changed: rare
                        if indexed is not None:
                            batch.known[name] = indexed
                    before = len(batch.entries)
                    visit_entry(ctx, directory, entry, stack, batch.entries, batch.failures)
                    if len(batch.entries) > before and self._still_written(batch.entries[-1]):
                        batch.entries.pop()  # a later pass of the watcher reads it
                    elif len(batch.entries) > before and not ctx.config.retry_failed:
                        if failed is None:
                            failed = lookup_dir_failures(reader, ctx.collection, directory)
                        if failed and (noted := _still_failed(batch.entries[-1], failed)) is not None:
                            batch.entries.pop()
                            batch.known_failures.append(noted)
                    if len(batch.entries) + len(batch.failures) + len(batch.known_failures) >= SCAN_BATCH:
                        batch = self._put(batch)
                        unchanged = batch.unchanged
        except OSError as exc:
            reason = f"cannot list directory: {exc.strerror or exc}"
            batch.failures.append(ScanFailure(directory, reason, is_directory=True))
            self._unlisted.append(directory)
        else:
            self._visited.add(directory)
            if known is None:
                known = lookup_dir_stats(reader, ctx.collection, directory)
            if matched < len(known):  # rare: files were deleted here; list once more to name them
                try:
                    present = set(os.listdir(directory))
                except OSError:
                    present = set(known)  # cannot tell: keep them
                batch.gone.extend(name for name in known if name not in present)
        if batch.entries or batch.failures or batch.unchanged or batch.gone or batch.known_failures:
            self._put(batch)

    def _still_written(self, entry: FileEntry) -> bool:
        """A watching job's new or changed file modified less than `settle_s` ago (an mtime ahead of the
        clock does not count): left for a later pass, named in `deferred`."""
        watch = self.ctx.watch
        if watch is None or watch.settle_s <= 0:
            return False
        age_ns = time.time_ns() - entry.mtime_ns
        if 0 <= age_ns < watch.settle_s * 1e9:
            watch.deferred.append(entry.path)
            return True
        return False

    def _vanished_directories(self, reader: sqlite3.Connection, tops: list[str] | None = None) -> None:
        """Indexed directories at or under `tops` (the root) that the walk never reached (deleted, or now
        hidden or behind a symlink): all their files are gone, unless an unlistable directory hides them."""
        ctx = self.ctx
        seen: set[str] = set()
        for top in [str(ctx.root)] if tops is None else tops:
            for directory in directories_under(reader, ctx.collection, top):
                if directory in seen or directory in self._visited:
                    continue
                seen.add(directory)
                if any(is_within(Path(directory), Path(u)) for u in self._unlisted):
                    continue
                names = list(lookup_dir_stats(reader, ctx.collection, directory))
                self._put(DirBatch(directory, [], [], {}, [], gone=names))

    def _put(self, batch: DirBatch) -> DirBatch:
        """Queue a batch: at once if it has work in it, else with other unchanged-only batches. Returns a
        fresh batch for the same directory."""
        self._pending.append(batch)
        self._pending_names += len(batch.unchanged)
        if (
            batch.entries
            or batch.failures
            or batch.gone
            or batch.known_failures
            or self._pending_names >= UNCHANGED_BATCH
        ):
            self._send()
        return DirBatch(batch.directory, [], [], {}, [])  # `gone` is only ever on a directory's last batch

    def _send(self) -> None:
        """Hand the pending batches to the loop (blocking while the queue is full or the job paused)."""
        batches, self._pending, self._pending_names = self._pending, [], 0
        control = self.ctx.control
        started = time.perf_counter()
        while not control.running_flag.wait(_PUT_POLL_S):
            if control.stop_flag.is_set():
                raise _Stopped
        if control.stop_flag.is_set():
            raise _Stopped
        future = asyncio.run_coroutine_threadsafe(self.out_q.put(batches), self.loop)
        while True:
            try:
                future.result(timeout=_PUT_POLL_S)
                break
            except concurrent.futures.TimeoutError:
                if control.stop_flag.is_set():
                    future.cancel()
                    raise _Stopped from None
        self.waited += time.perf_counter() - started


def _still_failed(entry: FileEntry, failed: dict[str, KnownFailureRow]) -> KnownFailure | None:
    """The remembered failure of this file, if it is the same file (size, mtime, inode) as then."""
    row = failed.get(entry.name)
    if row is None or (row[0], row[1], row[2]) != (entry.size, entry.mtime_ns, entry.inode):
        return None
    return KnownFailure(entry.path, row[3], row[4])


def visit_entry(
    ctx: PipelineContext,
    directory: str,
    entry: os.DirEntry[str],
    stack: list[str],
    entries: list[FileEntry],
    failures: list[ScanFailure],
) -> None:
    """The careful path for anything that is not an unchanged regular file."""
    root: Path = ctx.root
    path = entry.path
    resolved: str | None = None  # a link's target: what prepare opens
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        failures.append(ScanFailure(shown, "file name is not valid UTF-8"))
        return
    try:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            try:
                target = Path(path).resolve()
            except RuntimeError:
                failures.append(ScanFailure(path, "symlink loop"))
                return
            if not is_within(target, root):
                failures.append(ScanFailure(path, f"symlink points outside the root ({target})"))
                return
            if not target.exists():
                failures.append(ScanFailure(path, "broken symlink"))
                return
            st = target.stat()
            resolved = str(target)
            if stat.S_ISDIR(st.st_mode):
                return  # walked through its real path, which lies inside the root
        if stat.S_ISDIR(st.st_mode):
            stack.append(path)
            return
        if not stat.S_ISREG(st.st_mode):
            failures.append(ScanFailure(path, "not a regular file (device, FIFO or socket)"))
            return
    except OSError as exc:
        failures.append(ScanFailure(path, f"cannot stat: {exc.strerror or exc}"))
        return
    entries.append(
        FileEntry(
            path=path,
            directory=directory,
            name=entry.name,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            inode=st.st_ino,
            device=st.st_dev,
            target=resolved,
        )
    )
