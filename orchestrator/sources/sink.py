"""Bytes that arrive in pieces (an HTTP body, a download) streamed into one file, never whole in memory.

The event loop only buffers: each BUFFER_BYTES block goes to the sink's own writer thread (write, and an
fdatasync every SYNC_BYTES, so the disk writes back while the body still arrives and the fsync at the end
is short) and, for a new file, to its blake3 and sha256 threads (both release the GIL); one thread each, so
blocks stay in order. At most IN_FLIGHT blocks wait for them (memory stays bounded; the body waits, which
is TCP's backpressure). The type is sniffed from the first SNIFF_BYTES; the limit is checked on every piece.
Measured (scripts/bench_source_upload.py): the fdatasync every SYNC_BYTES is what lets a large upload's
final fsync end at once instead of writing the whole file back after its last byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

import blake3

from orchestrator.media.sniff import Sniffed, describe_unknown, sniff

BUFFER_BYTES = 1 << 20
SYNC_BYTES = 16 << 20
IN_FLIGHT = 8
# Bytes the type is told from: what the pipeline's prepare stage reads (enough for an MPEG-TS packet pair).
SNIFF_BYTES = 256
ACCEPTED_TYPES = frozenset({"image", "video", "audio", "document"})
_T = TypeVar("_T")


class TooLargeError(Exception):
    """More bytes than the limit (HTTP 413); the message names the limit."""


class NotAcceptedError(Exception):
    """Neither media nor a document (HTTP 415); the message says what it looks like."""


@dataclass(frozen=True, slots=True)
class Checksums:
    blake3: str  # the content hash the pipeline keys everything by
    sha256: str


@dataclass(frozen=True, slots=True)
class Received:
    path: Path
    size: int
    kind: Sniffed
    checksums: Checksums | None


def check_type(head: bytes, name: str) -> Sniffed:
    """What `head` (a file's first bytes) is, or NotAcceptedError when nothing would ingest it."""
    kind = sniff(head, name)
    if kind.media_type not in ACCEPTED_TYPES:
        raise NotAcceptedError(f"not media or a document ({describe_unknown(head)})")
    return kind


class FileSink:
    """One file being written from a stream. `open`, `write` pieces, then `finish` (flushed, fsync'd,
    closed), `save_partial` (the same, for a resumable upload cut off) or `abort` (closed; removed unless
    appending). Once created, one of the three must be awaited (they release its threads)."""

    def __init__(
        self, path: Path, name: str, limit: int, limit_name: str, *, append_at: int | None = None
    ) -> None:
        """A new file at `path`, hashed and sniffed as it comes; or, with `append_at`, bytes appended to an
        existing file after its first `append_at` bytes (a resumed upload: hashed and sniffed at its end)."""
        self.path = path
        self._name = name  # the file's eventual name: it tells some documents apart
        self._limit = limit
        self._limit_name = limit_name
        self._append = append_at is not None
        self._offset = append_at or 0
        self._file: BinaryIO | None = None
        self._pieces: list[bytes | memoryview] = []  # received, not yet a block
        self._buffered = 0
        self._in_flight: deque[asyncio.Future[None]] = deque()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sink-write")
        # blake3 and sha256 in a thread each: with the write, three cores' worth of work can overlap
        self._hashers = (
            []
            if self._append
            else [
                ThreadPoolExecutor(1, thread_name_prefix="sink-blake3"),
                ThreadPoolExecutor(1, thread_name_prefix="sink-sha256"),
            ]
        )
        self._blake3 = blake3.blake3()
        self._sha256 = hashlib.sha256()
        self._unsynced = 0  # bytes written since the last fdatasync (the writer thread's)
        self._head = b""
        self._kind: Sniffed | None = None
        self.received = 0  # bytes taken by `write` (buffered or written)

    async def open(self) -> None:
        self._file = await self._run(self._writer, self._open)

    def _open(self) -> BinaryIO:
        if self._append:
            fh = open(self.path, "r+b")  # closed by finish, save_partial or abort
            fh.truncate(self._offset)  # bytes past the recorded offset were never acknowledged
            fh.seek(self._offset)
            return fh
        return open(self.path, "xb")

    async def write(self, data: bytes | memoryview) -> None:
        """Take a piece (kept by reference until its block is joined: the caller must not change it)."""
        if not data:
            return
        if self.received + len(data) > self._limit:  # refused whole: `received` counts what is kept
            raise TooLargeError(f"larger than {self._limit_name} ({self._limit} bytes)")
        self.received += len(data)
        if self._kind is None and not self._append and len(self._head) < SNIFF_BYTES:
            self._head += bytes(data[: SNIFF_BYTES - len(self._head)])
            if len(self._head) >= SNIFF_BYTES:
                self._kind = check_type(self._head, self._name)
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered >= BUFFER_BYTES:
            self._send_buffer()
            while len(self._in_flight) > IN_FLIGHT * (1 + len(self._hashers)):  # futures per block
                await self._in_flight.popleft()

    def _send_buffer(self) -> None:
        if not self._pieces:
            return
        block = b"".join(self._pieces)  # the one copy a piece costs here
        self._pieces.clear()
        self._buffered = 0
        loop = asyncio.get_running_loop()
        self._in_flight.append(loop.run_in_executor(self._writer, self._write, block))
        if self._hashers:
            self._in_flight.append(loop.run_in_executor(self._hashers[0], _update, self._blake3, block))
            self._in_flight.append(loop.run_in_executor(self._hashers[1], _update, self._sha256, block))

    def _opened(self) -> BinaryIO:
        if self._file is None:
            raise RuntimeError(f"{self.path}: written before open() or after the end")
        return self._file

    def _write(self, block: bytes) -> None:
        fh = self._opened()
        fh.write(block)
        self._unsynced += len(block)
        if self._unsynced >= SYNC_BYTES:
            fh.flush()
            os.fdatasync(fh.fileno())
            self._unsynced = 0

    def _close(self) -> None:
        fh = self._opened()
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        self._file = None

    async def _drain(self) -> None:
        """Every block written and hashed, the file fsync'd and closed; the threads released."""
        self._send_buffer()
        try:
            while self._in_flight:
                await self._in_flight.popleft()
            await self._run(self._writer, self._close)
        finally:
            self._shutdown()

    async def finish(self) -> Received:
        """All bytes on disk (fsync'd), the file closed; sniffed when it is shorter than SNIFF_BYTES."""
        if self._kind is None and not self._append:
            self._kind = check_type(self._head, self._name)
        await self._drain()
        checksums: Checksums | None = None
        if self._hashers:
            checksums = Checksums(self._blake3.hexdigest(), self._sha256.hexdigest())
        kind = self._kind or Sniffed("unknown", "application/octet-stream")
        return Received(self.path, self._offset + self.received, kind, checksums)

    async def save_partial(self) -> int:
        """Keep what came (a resumed upload cut off): flushed, fsync'd, closed. Returns the file's size."""
        await self._drain()
        return self._offset + self.received

    async def abort(self) -> None:
        """Close the file and remove it unless it was there before (appending); never raises."""
        in_flight, self._in_flight = list(self._in_flight), deque()
        await asyncio.gather(*in_flight, return_exceptions=True)
        fh, self._file = self._file, None
        self._shutdown()
        await asyncio.to_thread(_close_and_remove, fh, None if self._append else self.path)

    async def _run(self, executor: ThreadPoolExecutor, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def _shutdown(self) -> None:
        for executor in (self._writer, *self._hashers):
            executor.shutdown(wait=False)


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> object: ...


def _update(hasher: _Hasher, block: bytes) -> None:
    hasher.update(block)


def _close_and_remove(fh: BinaryIO | None, path: Path | None) -> None:
    if fh is not None:
        fh.close()
    if path is not None:
        path.unlink(missing_ok=True)


def file_facts(path: Path, name: str) -> tuple[Sniffed, Checksums]:
    """Type and checksums of a file on disk, read once (a resumable upload's, at its end). Blocking.
    Raises NotAcceptedError."""
    b3, sha = blake3.blake3(), hashlib.sha256()
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        kind = check_type(head, name)
        block = head
        while block:
            b3.update(block)
            sha.update(block)
            block = fh.read(BUFFER_BYTES)
    return kind, Checksums(b3.hexdigest(), sha.hexdigest())
