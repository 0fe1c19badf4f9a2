"""Media decoding in worker processes with a per-file time limit, so that a corrupt or hostile file can
neither block the event loop nor hang or crash the job.

Each worker is its own process (a fresh interpreter: ``python -c``, never a fork of this threaded process)
with one socket pair to the pool. A decode that passes the time limit gets its worker killed; a worker that
dies (a crash in FFmpeg, the OOM killer) loses only the file it was decoding: the pool starts another one for
the next file. ``concurrent.futures.ProcessPoolExecutor`` cannot do this (one dead worker breaks the
executor and every future in it). The event loop only awaits: each decode's send/wait/receive runs on one of
the pool's own threads (one per worker), which mostly sleep in ``poll``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

from orchestrator.media.av_decode import AVOptions, DecodedAV
from orchestrator.media.images import MediaDecodeError

DEFAULT_TARGET = "orchestrator.media.av_decode:decode_av"
_STARTUP_TIMEOUT_S = 60.0  # a worker imports PyAV, numpy and Pillow before it says it is ready
_REAP_TIMEOUT_S = 5.0
_BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[2]); "
    "from orchestrator.media.decode_pool import _worker_main; _worker_main(int(sys.argv[1]))"
)


class DecodePoolClosedError(RuntimeError):
    """decode() on a pool that is closed or closing (not the file's fault)."""


class DecodePool:
    """At most ``workers`` files decode at once, each in a worker process, each within ``timeout_s``.

    ``target`` ("module:function", called as ``function(path, options)`` in the worker) is what a worker runs;
    tests replace it with functions that hang or crash. Workers start on first use and are replaced after a
    timeout or crash, and after ``max_files_per_worker`` files (so a worker's memory does not creep up).
    """

    def __init__(
        self,
        workers: int,
        timeout_s: float,
        *,
        target: str = DEFAULT_TARGET,
        max_files_per_worker: int = 200,
    ) -> None:
        if workers < 1 or timeout_s <= 0 or max_files_per_worker < 1:
            raise ValueError("need workers >= 1, timeout_s > 0 and max_files_per_worker >= 1")
        self.workers = workers
        self.timeout_s = timeout_s
        self._target = target
        self._max_files = max_files_per_worker
        self._slots = asyncio.Semaphore(workers)
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode-pool")
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._closed = False

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers alive now (idle or busy)."""
        with self._lock:
            return sorted(w.process.pid for w in self._live)

    async def decode(self, path: str, options: AVOptions) -> DecodedAV:
        """Decode ``path`` in a worker. ``MediaDecodeError`` for a file that cannot be decoded, that took
        longer than ``timeout_s`` or that crashed its worker; ``DecodePoolClosedError`` once ``close()`` was
        called (or this call was cancelled)."""
        if self._closed:
            raise DecodePoolClosedError("decode pool is closed")
        async with self._slots:
            job = _Job(path, options)
            future = asyncio.get_running_loop().run_in_executor(self._threads, self._run, job)
            try:
                result: DecodedAV = await future
            except asyncio.CancelledError:
                job.cancel()  # kill the worker now rather than let it decode for nobody
                raise
            return result

    async def close(self) -> None:
        """Kill every worker and wait until they are gone; decode() calls in flight raise."""
        with self._lock:
            self._closed = True
            workers, idle = list(self._live), list(self._idle)
            self._idle.clear()
        for worker in workers:
            worker.kill()
        # A busy worker's connection belongs to the thread waiting on it: that thread sees EOF and retires it.
        await asyncio.to_thread(_reap, workers, idle)
        await asyncio.to_thread(self._threads.shutdown, True, cancel_futures=True)
        with self._lock:
            self._live.clear()

    # ---- on the pool's threads ----

    def _run(self, job: _Job) -> Any:
        worker = self._acquire()
        if not job.attach(worker):
            self._retire(worker, kill=True)
            raise DecodePoolClosedError("decode cancelled")
        try:
            worker.conn.send((job.path, job.options))
            if not worker.conn.poll(self.timeout_s):
                self._retire(worker, kill=True)
                raise MediaDecodeError(f"decoding timed out after {self.timeout_s:g} s")
            reply = worker.conn.recv()
        except (EOFError, OSError) as exc:
            code = self._retire(worker, kill=True)
            if self._closed or job.cancelled:
                raise DecodePoolClosedError("decode pool closed or decode cancelled") from exc
            raise MediaDecodeError(f"decoder crashed ({_describe_exit(code)})") from exc
        if not job.detach():  # cancelled meanwhile: the worker may have been killed
            self._retire(worker, kill=True)
            raise DecodePoolClosedError("decode cancelled")
        self._release(worker)
        return _unwrap(reply)

    def _acquire(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise DecodePoolClosedError("decode pool is closed")
            while self._idle:
                idle = self._idle.pop()
                if idle.process.poll() is None:
                    return idle
                self._live.discard(idle)  # died while idle (e.g. the OOM killer): not this file's fault
                idle.close_conn()
        worker = _Worker.start(self._target)
        with self._lock:
            closed = self._closed
            if not closed:
                self._live.add(worker)
        if closed:
            self._retire(worker, kill=True)
            raise DecodePoolClosedError("decode pool is closed")
        try:
            worker.wait_ready(_STARTUP_TIMEOUT_S)
        except Exception as exc:
            self._retire(worker, kill=True)
            if self._closed:
                raise DecodePoolClosedError("decode pool is closed") from exc
            raise
        return worker

    def _release(self, worker: _Worker) -> None:
        worker.files += 1
        with self._lock:
            if not self._closed and worker.files < self._max_files:
                self._idle.append(worker)
                return
        self._retire(worker, kill=False)

    def _retire(self, worker: _Worker, *, kill: bool) -> int | None:
        """Stop a worker this thread holds (no other thread uses its connection)."""
        with self._lock:
            self._live.discard(worker)
        if kill:
            worker.kill()
        else:
            worker.close_conn()  # the worker reads EOF and exits
        code = worker.wait()
        worker.close_conn()
        return code


@dataclass(slots=True)
class _Job:
    path: str
    options: Any
    cancelled: bool = False
    worker: _Worker | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, worker: _Worker) -> bool:
        with self.lock:
            self.worker = worker
            return not self.cancelled

    def detach(self) -> bool:
        with self.lock:
            self.worker = None
            return not self.cancelled

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            if self.worker is not None:
                self.worker.kill()


class _Worker:
    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.files = 0
        self._conn_lock = threading.Lock()

    @classmethod
    def start(cls, target: str) -> _Worker:
        parent, child = Pipe(duplex=True)
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(child.fileno()), json.dumps([p for p in sys.path if p])],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        worker = cls(process, parent)
        parent.send(target)
        return worker

    def wait_ready(self, timeout_s: float) -> None:
        try:
            ready = self.conn.poll(timeout_s) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            raise RuntimeError(f"decode worker did not start ({_describe_exit(self.process.poll())})")

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass

    def wait(self) -> int | None:
        """Wait for the process to end (killing it if it takes longer than a few seconds); its exit code."""
        try:
            return self.process.wait(_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait()

    def close_conn(self) -> None:
        with self._conn_lock:
            if not self.conn.closed:
                self.conn.close()


def _reap(workers: list[_Worker], idle: list[_Worker]) -> None:
    for worker in workers:
        worker.wait()
    for worker in idle:  # nobody else holds these
        worker.close_conn()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"exit code {code}, {signal.Signals(-code).name}"
        except ValueError:
            return f"exit code {code}"
    return f"exit code {code}"


def _unwrap(reply: tuple[Any, ...]) -> Any:
    kind = reply[0]
    if kind == "ok":
        return reply[1]
    if kind == "media":
        raise MediaDecodeError(reply[1])
    error = MediaDecodeError(f"decoder failed: {reply[1]}")
    error.add_note(reply[2])  # the worker's traceback
    raise error


# ---- in the worker process ----


def _worker_main(fd: int) -> None:
    """Serve decode requests on ``fd`` until the pool closes it (or this process's parent dies)."""
    conn = Connection(fd)
    _exit_with_parent()
    target = _resolve(conn.recv())
    conn.send("ready")
    while True:
        try:
            path, options = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[Any, ...] = ("ok", target(path, options))
        except MediaDecodeError as exc:
            reply = ("media", str(exc))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


def _resolve(target: str) -> Callable[[str, Any], Any]:
    module_name, _, name = target.partition(":")
    function: Callable[[str, Any], Any] = getattr(importlib.import_module(module_name), name)
    return function


def _exit_with_parent() -> None:
    """No orphans: a worker whose pool process died (even by SIGKILL) exits within a second."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
