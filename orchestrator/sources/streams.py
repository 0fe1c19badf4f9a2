"""Live streams (POST /streams): a stream is a job of kind "stream" whose root is its own directory,

    UPLOAD_DIR/.streams/<collection>/<stream id>/   closed segments, `<UTC start>.mkv` (segments.py)
                                                    `.url`: the URL as given (credentials: mode 0600)

`.streams` is not a collection name, so no upload root holds it; each stream's directory is a root of its
own in the catalog (a rebuild walks it like any root). `StreamRecording` runs the stream's recorder (a child
process, recorder.py; spawned again with backoff should it die), hears its events (state, segments) and
keeps the buffer: at most STREAM_BUFFER_SEGMENTS closed segments wait for a pass, the oldest beyond are
deleted unprocessed (counted, logged). Segments older than the retention are deleted before a pass, which
then prunes their points (it lists the directory). The job manager runs the passes (`next_batch`, `take`,
`done`): one at a time, each over the stream's directory only (a watched folder's `ScanScope`).

Paused, a stream keeps recording (the buffer's bound holds) and its passes wait for resume. Cancelled, its
recorder is stopped; what it recorded stays, searchable (no retention runs for a stopped stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never, wait_exponential

import orchestrator
from orchestrator.config import Settings
from orchestrator.logs import get_logger
from orchestrator.sources.recorder import RecorderConfig
from orchestrator.sources.segments import PART_SUFFIX, segment_start
from orchestrator.sources.stream_status import Connection, StreamStatus

log = get_logger(__name__)

STREAMS_DIR = ".streams"
URL_FILE = ".url"
STOP_GRACE_S = 5.0  # a recorder asked to stop (SIGTERM) is killed after this long
_MAX_LINE = 1 << 16


def stream_directory(upload_root: Path, collection: str, stream_id: str) -> Path:
    return upload_root / STREAMS_DIR / collection / stream_id


def save_url(directory: Path, url: str) -> None:
    """Keep the URL as given (it may carry a camera's password) beside the segments, readable by this
    user only; the job's row has it without credentials. Blocking."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / URL_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(url)


def load_url(directory: Path, public_url: str) -> str:
    """The URL `save_url` kept, else the one without credentials. Blocking."""
    try:
        return (directory / URL_FILE).read_text(encoding="utf-8").strip() or public_url
    except OSError:
        return public_url


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    start: float  # wall clock of its time 0
    duration_s: float

    @property
    def end(self) -> float:
        return self.start + self.duration_s


@dataclass(frozen=True, slots=True)
class StreamConfig:
    url: str  # as given, credentials included
    directory: Path
    chunk_s: float
    buffer_segments: int
    retention_s: float
    allowed_networks: str
    reconnect_max_s: float


class RecorderExited(Exception):
    pass


class StreamRecording:
    """One stream's recorder and buffer, from `start` to `close` (see the module)."""

    def __init__(self, config: StreamConfig, status: StreamStatus) -> None:
        self.config = config
        self.status = status
        self._pending: deque[Segment] = deque()  # closed, not yet taken by a pass
        self._on_disk: deque[tuple[float, str]] = deque()  # (start, name) of every segment, oldest first
        self._arrived = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Clear what a dead recorder left half written, learn the segments on disk, start recording."""
        names = await asyncio.to_thread(_prepare_directory, self.config.directory)
        for name in names:
            start = segment_start(name)
            if start is not None:
                self._on_disk.append((start, name))
        self.status.connection = Connection.CONNECTING
        self._supervisor = asyncio.create_task(self._supervise(), name=f"stream-{self.config.directory.name}")
        self._supervisor.add_done_callback(lambda _: self._arrived.set())  # next_batch sees it end
        log.info("stream_start", url=self.status.url, segments_on_disk=len(self._on_disk))

    async def close(self) -> None:
        """Stop the recorder (and wait until it is gone)."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.wait({self._supervisor})
        self.status.connection = Connection.STOPPED
        self.status.recorder_pid = None
        log.info("stream_stop", url=self.status.url)

    async def next_batch(self, running: asyncio.Event) -> None:
        """Wait (while `running`) until a segment waits for a pass or one is past the retention."""
        while True:
            await running.wait()
            self._check_supervisor()
            if self._pending or self._expiring_in() <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(self._expiring_in(), 3600.0))

    async def take(self) -> list[Segment]:
        """The segments the next pass ingests; segments past the retention are deleted first (the pass
        prunes their points)."""
        horizon = time.time() - self.config.retention_s
        expired: list[str] = []
        while self._on_disk and self._on_disk[0][0] < horizon:
            expired.append(self._on_disk.popleft()[1])
        if expired:
            gone = set(expired)
            self._pending = deque(s for s in self._pending if s.name not in gone)
            await asyncio.to_thread(_delete, self.config.directory, expired)
            self.status.expired += len(expired)
            log.info("stream_segments_expired", segments=len(expired))
        batch = list(self._pending)
        self._pending.clear()
        self.status.pending = 0
        return batch

    def done(self, batch: list[Segment]) -> None:
        """A pass over `batch` ended."""
        self.status.ingested += len(batch)
        if batch:
            newest = max(s.end for s in batch)
            self.status.ingested_until = max(newest, self.status.ingested_until or newest)
            self.status.lag_s = round(time.time() - newest, 3)

    def _expiring_in(self) -> float:
        """Seconds until the oldest segment is past the retention (inf without segments)."""
        if not self._on_disk:
            return float("inf")
        return self._on_disk[0][0] + self.config.retention_s - time.time()

    def _check_supervisor(self) -> None:
        if self._supervisor is not None and self._supervisor.done():
            self._supervisor.result()  # it runs until cancelled: an error of its own fails the job
            raise RuntimeError("the stream's recorder supervisor stopped")

    async def _supervise(self) -> None:
        """Run the recorder for ever: one that exits (it never does by itself) is started again after a
        growing wait."""
        async for attempt in AsyncRetrying(
            stop=stop_never,
            wait=wait_exponential(multiplier=0.5, min=0.5, max=self.config.reconnect_max_s),
            retry=retry_if_exception_type(RecorderExited),
            before_sleep=self._recorder_died,
        ):
            with attempt:
                await self._run_recorder()

    async def _run_recorder(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchestrator.sources.recorder",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=_child_env(),
            limit=_MAX_LINE,
        )  # from the event loop's thread: the thread the recorder's PDEATHSIG watches
        self.status.recorder_pid = process.pid
        try:
            assert process.stdin is not None and process.stdout is not None  # (PIPE asked for)
            settings = RecorderConfig(
                url=self.config.url,
                directory=str(self.config.directory),
                chunk_s=self.config.chunk_s,
                allowed_networks=self.config.allowed_networks,
                reconnect_max_s=self.config.reconnect_max_s,
                parent_pid=os.getpid(),
            )
            process.stdin.write(settings.to_json().encode() + b"\n")
            await process.stdin.drain()
            process.stdin.close()
            while line := await process.stdout.readline():
                await self.handle_event(line)
            code = await process.wait()
        finally:
            await _stop(process)
            self.status.recorder_pid = None
        raise RecorderExited(f"the recorder exited ({_exit(code)})")

    async def handle_event(self, line: bytes) -> None:
        """One line of the recorder's protocol (recorder.py): its connection state, or a segment closed."""
        try:
            event = json.loads(line)
            kind = event["event"]
        except (ValueError, KeyError, TypeError):
            log.warning("stream_recorder_said", line=line[:200].decode(errors="replace"))
            return
        status = self.status
        if kind == "recording":
            status.connection = Connection.RECORDING
            log.info("stream_recording", url=status.url)
        elif kind == "failed":
            status.connection = Connection.RECONNECTING
            status.reconnects += 1
            status.last_error = str(event.get("error"))[:1000]
            status.last_error_at = time.time()
            log.warning("stream_reconnecting", error=status.last_error, retry_in=event.get("retry_in"))
        elif kind == "segment" and segment_start(str(event.get("name"))) is not None:
            segment = Segment(str(event["name"]), float(event["start"]), float(event["duration"]))
            status.recorded += 1
            status.last_segment_at = segment.end
            self._pending.append(segment)
            self._on_disk.append((segment.start, segment.name))
            await self._bound()
            status.pending = len(self._pending)
            self._arrived.set()

    async def _bound(self) -> None:
        """At most STREAM_BUFFER_SEGMENTS wait for a pass: the oldest beyond are deleted unprocessed."""
        dropped: list[str] = []
        while len(self._pending) > self.config.buffer_segments:
            dropped.append(self._pending.popleft().name)
        if not dropped:
            return
        gone = set(dropped)
        self._on_disk = deque(entry for entry in self._on_disk if entry[1] not in gone)
        await asyncio.to_thread(_delete, self.config.directory, dropped)
        self.status.dropped += len(dropped)
        log.warning("stream_segments_dropped", segments=len(dropped), buffer=self.config.buffer_segments)

    def _recorder_died(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self.status.connection = Connection.RECONNECTING
        self.status.last_error = str(error)
        self.status.last_error_at = time.time()
        retry_in = state.next_action.sleep if state.next_action is not None else 0.0
        log.error("stream_recorder_exited", error=str(error), retry_in=retry_in)


def _prepare_directory(directory: Path) -> list[str]:
    """Create the stream's directory, delete half-written segments; the names in it, sorted. Blocking."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for entry in os.scandir(directory):
        if entry.name.startswith(".") and entry.name.endswith(PART_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
        else:
            names.append(entry.name)
    return sorted(names)


def _delete(directory: Path, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)


def _child_env() -> dict[str, str]:
    """The recorder imports this package wherever the orchestrator runs from."""
    package_root = str(Path(orchestrator.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{package_root}{os.pathsep}{path}" if path else package_root}


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after STOP_GRACE_S; returns once the process is reaped."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _exit(code: int) -> str:
    return f"exit code {code}" if code >= 0 else f"signal {-code}"


async def recording_for(
    directory: Path, options: Mapping[str, Any], settings: Settings, status: StreamStatus
) -> StreamRecording:
    """The recording of a stream job (its root, its options) under the settings of now."""
    public = str(options["url"])
    url = await asyncio.to_thread(load_url, directory, public)
    hours = float(options.get("retention_hours") or settings.stream_retention_hours)
    config = StreamConfig(
        url=url,
        directory=directory,
        chunk_s=settings.chunk_seconds,
        buffer_segments=settings.stream_buffer_segments,
        retention_s=hours * 3600.0,
        allowed_networks=settings.url_allowed_networks,
        reconnect_max_s=settings.stream_reconnect_max_s,
    )
    status.url = public
    return StreamRecording(config, status)
