"""A watched folder: inotify (watchfiles' Rust notifier) over a job's root, turned into bursts of settled
changes, each the scope of one more pipeline pass (orchestrator/watch_plan.py decides what it lists).

watchfiles' `RustNotify` is used directly rather than `awatch`: `awatch` builds the notifier (one inotify
watch per directory, a walk of the whole tree) on the event loop and then parks in one of anyio's worker
threads, shared with Starlette, for as long as it watches; here both happen in one thread of the watcher's
own. The notifier groups changes (`STEP_MS` of quiet, at most `DEBOUNCE_MS`); `Settler` then holds back
files still being written (WATCH_SETTLE_S, checked by lstat in a worker thread). A burst waits until every
changed path has settled, so the two halves of a move (its old path gone, its new one settling) land in
one pass and the content's points never go in between; but a settled change waits at most `HOLD_S` for a
file that keeps growing (a long recording), which stays for a later burst.

The root itself gone or replaced (another inode: its inotify watch no longer sees anything) raises
`WatchedRootGone`: the job fails with that reason and its points stay as they are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchfiles._rust_notify import RustNotify

from orchestrator.logs import get_logger
from orchestrator.pipeline.context import ScanScope
from orchestrator.watch_plan import Kind, Look, Settler, plan_scope, relevant, within

if TYPE_CHECKING:
    from orchestrator.jobs import WatchStatus

log = get_logger(__name__)

STEP_MS = 50  # a group of changes ends after this much quiet...
DEBOUNCE_MS = 1600  # ...or after this long
TIMEOUT_MS = 1000  # the notifier's thread looks at the stop event at least this often
ROOT_CHECK_S = 5.0  # an idle watcher checks its root at least this often
HOLD_S = 10.0  # the longest a settled change waits for other changes still settling


class WatchedRootGone(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Burst:
    """Settled changes: one pass's scope (None: the whole root) and how many changed paths it covers."""

    scope: ScanScope | None
    paths: int


class FolderWatcher:
    """Watches one root from `start` to `close`; `next_burst` hands over the changes settled so far."""

    def __init__(
        self,
        root: str,
        settle_s: float,
        include_hidden: bool,
        status: WatchStatus,
        ignored: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.include_hidden = include_hidden
        # Trees whose changes are not the user's (DATA_DIR inside the root: each pass writes there, and
        # its own writes must not call for another pass).
        self.ignored = ignored
        self.status = status  # what the job shows: last_event_at, pending (only the loop writes it)
        self._settler = Settler(settle_s)
        self._pending: dict[str, float] = {}  # changed path -> when it was first seen (monotonic)
        self._changed = asyncio.Event()
        self._stop = threading.Event()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="watch")
        self._notify: RustNotify | None = None
        self._reader: asyncio.Task[None] | None = None
        self._identity: tuple[int, int] | None = None  # the root's device and inode

    async def start(self) -> None:
        """Watch the tree (before the job's first pass reads it, so no change falls between the two)."""
        loop = asyncio.get_running_loop()
        self._identity = await loop.run_in_executor(self._thread, _identity, self.root)
        if self._identity is None:
            raise WatchedRootGone(f"watched folder {self.root} is gone")
        try:
            self._notify = await loop.run_in_executor(
                self._thread, lambda: RustNotify([self.root], False, False, 300, True, True)
            )
        except OSError as exc:  # e.g. ENOSPC: fs.inotify.max_user_watches is smaller than the tree
            raise OSError(f"cannot watch {self.root}: {exc} (see fs.inotify.max_user_watches)") from exc
        self._reader = asyncio.create_task(self._read(self._notify), name=f"watch-{self.root}")
        self._reader.add_done_callback(lambda _: self._changed.set())
        self.status.listening = True
        log.info("watch_start", root=self.root)

    async def close(self) -> None:
        """Stop watching (the notifier's thread sees the stop within STEP_MS)."""
        self._stop.set()
        self.status.listening = False
        try:
            if self._reader is not None:
                await asyncio.wait({self._reader})  # it ends by itself once the notifier returns
        finally:
            if self._notify is not None and (self._reader is None or self._reader.done()):
                self._notify.close()
            self._thread.shutdown(wait=False)
        log.info("watch_stop", root=self.root)

    def requeue(self, paths: Iterable[str]) -> None:
        """Files a pass left because they were still being written: looked at again."""
        self._add(paths)

    async def next_burst(self, running: asyncio.Event) -> Burst:
        """Wait (while `running`) until the changed paths are settled (see the module's docstring); hand
        them over as one pass's scope. Changes keep arriving meanwhile, for a later burst."""
        loop = asyncio.get_running_loop()
        while True:
            await running.wait()
            self._check_reader()
            self._changed.clear()
            paths = list(self._pending)
            looks, identity = await loop.run_in_executor(None, _look, paths, self.root)
            if identity != self._identity:
                raise WatchedRootGone(f"watched folder {self.root} is gone or was replaced")
            now = time.monotonic()
            ripe: list[Look] = []
            settling_s: float | None = None  # until the next path still settling settles
            for look in looks:
                left = self._settler.wait_s(look, now)
                if left <= 0:
                    ripe.append(look)
                else:
                    settling_s = left if settling_s is None else min(settling_s, left)
            held_s = now - min((self._pending[look.path] for look in ripe), default=now)
            if not running.is_set():  # paused while looking: the changes wait for resume
                continue
            if ripe and (settling_s is None or held_s >= HOLD_S):
                for look in ripe:
                    del self._pending[look.path]
                    self._settler.forget(look.path)
                self.status.pending = len(self._pending)
                return Burst(plan_scope(self.root, ripe, self.include_hidden), len(ripe))
            wait_s = ROOT_CHECK_S if settling_s is None else settling_s
            if ripe:
                wait_s = min(wait_s, HOLD_S - held_s)
            try:
                await asyncio.wait_for(self._changed.wait(), wait_s)
            except TimeoutError:
                pass

    def _add(self, paths: Iterable[str]) -> None:
        now = time.monotonic()
        for path in paths:
            ignored = any(within(path, tree) for tree in self.ignored)
            if not ignored and relevant(path, self.root, self.include_hidden):
                self._pending.setdefault(path, now)
        self.status.pending = len(self._pending)
        self._changed.set()

    async def _read(self, notify: RustNotify) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            changes = await loop.run_in_executor(
                self._thread, notify.watch, DEBOUNCE_MS, STEP_MS, TIMEOUT_MS, self._stop
            )
            if isinstance(changes, str):  # "timeout", "stop" (the loop ends), "signal" (not in a thread)
                continue
            self.status.last_event_at = time.time()
            self.status.events += len(changes)
            self._add(path for _, path in changes)

    def _check_reader(self) -> None:
        """The notifier failing ends the watch (the job fails with its error)."""
        if self._reader is not None and self._reader.done():
            self._reader.result()
            raise RuntimeError(f"watching {self.root} stopped")


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _look(paths: list[str], root: str) -> tuple[list[Look], tuple[int, int] | None]:
    """lstat each changed path, and the root's identity (blocking: run in a worker thread)."""
    looks = []
    for path in paths:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            looks.append(Look(path, Kind.GONE))
            continue
        except OSError:
            looks.append(Look(path, Kind.FILE))  # the scan records why it cannot be read
            continue
        if stat.S_ISDIR(st.st_mode):
            looks.append(Look(path, Kind.DIR))
        else:
            looks.append(Look(path, Kind.FILE, (st.st_size, st.st_mtime_ns, st.st_ino)))
    return looks, _identity(root)
