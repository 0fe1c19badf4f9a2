"""Media decoding in worker processes, so that a corrupt or hostile file can neither block the event loop
nor hang, crash or exhaust the memory of the job.

pebble's ``ProcessPool`` does the process work: a per-file time limit (the worker is killed and replaced),
a crashed worker reported (``ProcessExpired``) and replaced, a cancelled decode's worker killed, workers
recycled after ``max_files_per_worker`` files. Workers are spawned (a fresh interpreter, never a fork of
this threaded process). What this module adds, because pebble cannot:

- in each worker, at start: ``PR_SET_PDEATHSIG`` (the kernel kills it when the orchestrator dies, even by
  SIGKILL) and ``RLIMIT_AS`` (``memory_limit_mb``: a decode past it fails that file with MemoryError);
- a fresh pool when pebble's breaks (a worker that dies while no file is running marks a pebble pool
  broken for good), and one more try for a file caught in that (not its fault);
- no await without a bound: a decode pebble has not answered within the time limit plus ``_GRACE_S``
  (a wedged result channel) fails, and the pool is replaced.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, cast, overload

from pebble import ProcessExpired, ProcessPool

from orchestrator.logs import get_logger
from orchestrator.media.av_decode import AVOptions, DecodedAV, decode_av
from orchestrator.media.documents import DecodedDocument, DocumentOptions, decode_document
from orchestrator.media.images import MediaDecodeError

log = get_logger(__name__)

# Past the time limit, pebble kills a worker within a few seconds (SIGTERM, then SIGKILL after 3 s); a
# decode still unanswered this much later means the pool itself is stuck.
_GRACE_S = 30.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

Options = AVOptions | DocumentOptions
DecodeTarget = Callable[[str, Any], Any]


def decode_file(path: str, options: Options) -> DecodedAV | DecodedDocument:
    """The workers' default target: a video/audio file or a document, told apart by its options."""
    if isinstance(options, DocumentOptions):
        return decode_document(path, options)
    return decode_av(path, options)


class DecodePoolClosedError(RuntimeError):
    """decode() on a pool that is closed or closing (not the file's fault)."""


class DecodePool:
    """At most ``workers`` files decode at once, each in a worker process, each within ``timeout_s`` and,
    when ``memory_limit_mb`` is set, within that much address space.

    ``target`` (a module-level function, called as ``target(path, options)`` in the worker) is what a worker
    runs; tests replace it with functions that hang, crash or allocate. Workers start on first use."""

    def __init__(
        self,
        workers: int,
        timeout_s: float,
        *,
        target: DecodeTarget = decode_file,
        max_files_per_worker: int = 200,
        memory_limit_mb: int | None = None,
    ) -> None:
        if workers < 1 or timeout_s <= 0 or max_files_per_worker < 1:
            raise ValueError("need workers >= 1, timeout_s > 0 and max_files_per_worker >= 1")
        if memory_limit_mb is not None and memory_limit_mb < 1:
            raise ValueError("memory_limit_mb must be >= 1 (or None: no limit)")
        self.workers = workers
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self._target = target
        self._max_files = max_files_per_worker
        self._slots = asyncio.Semaphore(workers)  # files submitted to pebble: its time limit starts at once
        self._replacing = asyncio.Lock()
        self._pool: ProcessPool | None = None
        self._in_flight: set[Future[Any]] = set()
        self._closed = False

    @overload
    async def decode(self, path: str, options: AVOptions) -> DecodedAV: ...

    @overload
    async def decode(self, path: str, options: DocumentOptions) -> DecodedDocument: ...

    async def decode(self, path: str, options: Options) -> DecodedAV | DecodedDocument:
        """Decode ``path`` in a worker. ``MediaDecodeError`` for a file that cannot be decoded, that took
        longer than ``timeout_s``, that needed more memory than the limit or that crashed its worker;
        ``DecodePoolClosedError`` once ``close()`` was called."""
        if self._closed:
            raise DecodePoolClosedError("decode pool is closed")
        async with self._slots:
            answer = await self._attempt(path, options)
            if _pool_broke(answer) and not self._closed:  # under it, not because of it: once more
                log.warning("decode_pool_broke_retry", path=path)
                answer = await self._attempt(path, options)
            return cast(DecodedAV | DecodedDocument, self._outcome(answer))

    async def _attempt(self, path: str, options: Options) -> asyncio.Future[Any]:
        """One try in the current pool: its settled answer (never awaited past the time limit + grace)."""
        pool = await self._live_pool()
        future: Future[Any] = pool.schedule(
            _decode_in_worker,
            args=(self._target, path, options, self.memory_limit_mb),
            timeout=self.timeout_s,
        )
        self._in_flight.add(future)
        answer = asyncio.wrap_future(future)
        try:
            done, _ = await asyncio.wait({answer}, timeout=self.timeout_s + _GRACE_S)
        except asyncio.CancelledError:
            future.cancel()  # pebble kills the worker now rather than let it decode for nobody
            raise
        finally:
            self._in_flight.discard(future)
        if not done:
            future.cancel()
            log.error("decode_pool_stuck", path=path, waited_s=self.timeout_s + _GRACE_S)
            await self._replace(pool)
            raise MediaDecodeError(f"decoding timed out after {self.timeout_s:g} s (worker pool replaced)")
        return answer

    async def close(self) -> None:
        """Kill every worker and wait until they are gone; decode() calls in flight raise."""
        self._closed = True
        for future in list(self._in_flight):
            future.cancel()
        async with self._replacing:
            pool, self._pool = self._pool, None
        if pool is not None:
            await self._stop(pool)

    async def _live_pool(self) -> ProcessPool:
        """The pebble pool, started on first use (on the event loop's thread: the thread a worker's
        PDEATHSIG watches) and replaced when pebble marked it broken."""
        async with self._replacing:
            if self._closed:
                raise DecodePoolClosedError("decode pool is closed")
            if self._pool is not None and not self._pool.active:
                log.warning("decode_pool_broken")
                await self._stop(self._pool)
                self._pool = None
            if self._pool is None:
                self._pool = ProcessPool(
                    max_workers=self.workers,
                    max_tasks=self._max_files,
                    initializer=_init_worker,
                    initargs=(os.getpid(), self.memory_limit_mb),
                    context=multiprocessing.get_context("spawn"),
                )
                _ = self._pool.active  # starts the workers here, on this thread
            return self._pool

    async def _replace(self, pool: ProcessPool) -> None:
        async with self._replacing:
            if self._pool is pool:
                self._pool = None
                await self._stop(pool)

    @staticmethod
    async def _stop(pool: ProcessPool) -> None:
        pool.stop()  # type: ignore[no-untyped-call]  # (pebble leaves it unannotated)
        await asyncio.to_thread(pool.join)  # kills its workers (SIGTERM, then SIGKILL)

    def _outcome(self, answer: asyncio.Future[Any]) -> Any:
        """The decode's result, or its failure as MediaDecodeError (DecodePoolClosedError when closing)."""
        if answer.cancelled():  # close() or a pool replacement cancelled it
            if self._closed:
                raise DecodePoolClosedError("decode pool closed")
            raise MediaDecodeError("decoding interrupted: the worker pool was replaced")
        error = answer.exception()
        if error is None:
            return answer.result()
        if isinstance(error, MediaDecodeError):
            raise error
        if self._closed:
            raise DecodePoolClosedError("decode pool closed") from error
        if isinstance(error, TimeoutError):
            raise MediaDecodeError(f"decoding timed out after {self.timeout_s:g} s") from None
        if isinstance(error, ProcessExpired):
            raise MediaDecodeError(f"decoder crashed ({_describe_exit(error.exitcode)})") from None
        if isinstance(error, BrokenProcessPool):
            raise MediaDecodeError(f"decoder pool failed: {error}") from error
        raise MediaDecodeError(f"decoder failed: {type(error).__name__}: {error}") from error


def _pool_broke(answer: asyncio.Future[Any]) -> bool:
    """pebble gave up on the whole pool (e.g. a worker died while no file ran): not the file's fault."""
    return not answer.cancelled() and isinstance(answer.exception(), BrokenProcessPool)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"exit code {code}, {signal.Signals(-code).name}"
        except ValueError:
            return f"exit code {code}"
    return f"exit code {code}"


# ---- in the worker process ----


def _init_worker(parent_pid: int, memory_limit_mb: int | None) -> None:
    """Runs once in each worker before its first file: die with the orchestrator, cap the memory."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the orchestrator died before the line above took effect
        os._exit(0)
    if memory_limit_mb is not None:
        limit = memory_limit_mb << 20
        resource.setrlimit(
            resource.RLIMIT_AS, (limit, limit)
        )  # the hard limit too: the decoder cannot lift it


def _decode_in_worker(target: DecodeTarget, path: str, options: Options, memory_limit_mb: int | None) -> Any:
    """One file; every failure leaves as a MediaDecodeError with a reason (always picklable)."""
    try:
        return target(path, options)
    except MediaDecodeError:
        raise
    except MemoryError:
        limit = f"DECODE_MEMORY_LIMIT_MB={memory_limit_mb}" if memory_limit_mb else "no limit set"
        raise MediaDecodeError(f"decoding needs more memory than this worker may use ({limit})") from None
    except Exception as exc:
        error = MediaDecodeError(f"decoder failed: {type(exc).__name__}: {exc}")
        error.add_note(traceback.format_exc())
        raise error from None
