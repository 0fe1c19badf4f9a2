"""Stage 1: walk the tree with recursive scandir in ONE worker thread (PERF.md: ~140k files/s with stat;
a thread hop per file would cost 7x). Directory batches go to the bounded queue from that thread, which
blocks while the queue is full (backpressure), waits while the job is paused and stops when asked.

Symlinks never lead outside the root: a link to a file inside the root is followed, one to a directory is
not descended (its target is walked anyway when inside the root, and loops are impossible), and one that
points outside the root or nowhere is recorded as a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import stat
import time
from pathlib import Path

from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import SENTINEL, DirBatch, FileEntry, ScanFailure
from orchestrator.security import is_within

# Entries per message: lists amortise queue overhead (PERF.md: 64-item puts ~25x faster than single).
SCAN_BATCH = 256
_PUT_POLL_S = 0.2


class _Stopped(Exception):
    pass


async def scan_stage(ctx: PipelineContext, out_q: asyncio.Queue[object], n_downstream: int) -> None:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        waited = await asyncio.to_thread(_walk, ctx, loop, out_q)
        # Busy = time walking, not time blocked on a full queue or a pause.
        ctx.progress.stages["scan"].busy_s += time.perf_counter() - started - waited
        ctx.progress.scan_complete = not ctx.control.stop_flag.is_set()
    except asyncio.CancelledError:
        # The thread must not outlive the job: it polls this flag whenever it waits.
        ctx.control.stop_flag.set()
        raise
    for _ in range(n_downstream):
        await out_q.put(SENTINEL)


def _walk(ctx: PipelineContext, loop: asyncio.AbstractEventLoop, out_q: asyncio.Queue[object]) -> float:
    """Walk depth-first; returns the seconds spent waiting to put (backpressure or pause)."""
    root = ctx.root
    stack = [str(root)]
    waited = 0.0
    try:
        while stack:
            directory = stack.pop()
            entries: list[FileEntry] = []
            failures: list[ScanFailure] = []
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        _visit(ctx, root, directory, entry, stack, entries, failures)
                        if len(entries) + len(failures) >= SCAN_BATCH:
                            waited += _put(ctx, loop, out_q, DirBatch(directory, entries, failures))
                            entries, failures = [], []
            except OSError as exc:
                reason = f"cannot list directory: {exc.strerror or exc}"
                failures.append(ScanFailure(directory, reason, is_directory=True))
            if entries or failures:
                waited += _put(ctx, loop, out_q, DirBatch(directory, entries, failures))
    except _Stopped:
        pass
    return waited


def _visit(
    ctx: PipelineContext,
    root: Path,
    directory: str,
    entry: os.DirEntry[str],
    stack: list[str],
    entries: list[FileEntry],
    failures: list[ScanFailure],
) -> None:
    if entry.name.startswith(".") and not ctx.config.include_hidden:
        return
    path = entry.path
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
        )
    )


def _put(
    ctx: PipelineContext, loop: asyncio.AbstractEventLoop, out_q: asyncio.Queue[object], item: DirBatch
) -> float:
    control = ctx.control
    started = time.perf_counter()
    while not control.running_flag.wait(_PUT_POLL_S):
        if control.stop_flag.is_set():
            raise _Stopped
    if control.stop_flag.is_set():
        raise _Stopped
    future = asyncio.run_coroutine_threadsafe(out_q.put(item), loop)
    while True:
        try:
            future.result(timeout=_PUT_POLL_S)
            return time.perf_counter() - started
        except concurrent.futures.TimeoutError:
            if control.stop_flag.is_set():
                future.cancel()
                raise _Stopped from None
