"""The recorder: one child process per live stream (`python -m orchestrator.sources.recorder`), spawned by
`streams.StreamRecording`. It opens the stream with PyAV and remuxes its packets, never decoding them, into
closed segment files of about `chunk_s` (segments.py: the cuts, the names, the wall clock), each written as
a hidden `.part` and renamed when closed, with its wall-clock start as the container's creation_time (the
probe's taken_at). A stream that drops or cannot be opened is opened again with backoff (tenacity), for
ever: the parent stops the process.

Why a process: a demuxer blocks in C for as long as the network makes it wait, and a camera's bytes are
parsed by FFmpeg; a process keeps both off the orchestrator (killed, it takes nothing with it). It dies
with the orchestrator (`PR_SET_PDEATHSIG`, as the decode workers do).

Protocol: the settings arrive as one JSON line on stdin (never argv: other users can read a process's
command line, and an RTSP URL may carry a password); events leave as JSON lines on stdout:
`{"event": "recording"}` (a connection delivers packets), `{"event": "failed", "error": ..., "retry_in":
...}` (a connection failed or dropped), `{"event": "segment", "name", "start", "duration", "bytes"}`.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.stream import Stream
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_never, wait_exponential

from orchestrator.sources.addresses import parse_networks
from orchestrator.sources.fetch import FetchError
from orchestrator.sources.hls_open import CheckedOpener
from orchestrator.sources.segments import (
    Cutter,
    Decision,
    Kind,
    PacketTime,
    creation_time,
    part_name,
    segment_name,
)
from orchestrator.sources.stream_urls import StreamKind, connect_url, parse_stream_url

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
HLS_MAX_BYTES = 512 << 20  # one playlist or media segment
OPEN_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 30.0  # no packet for this long: the stream is dropped and opened again
# Probing a live input only needs its codecs' parameters (RTSP carries them in its SDP): at FFmpeg's
# default of 5 s of probing, the first segment would start 5 s late.
_PROBE = {"analyzeduration": "1000000", "probesize": "1000000"}
Emit = Callable[[dict[str, Any]], None]
Arrival = Callable[["Packet[Stream]"], float]  # when a packet was read (wall clock); tests replay files


def read_now(_packet: Packet[Stream]) -> float:
    return time.time()


class StreamFailure(Exception):
    """A connection that failed before it recorded anything (retried with growing waits)."""


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    url: str  # with credentials, as given
    directory: str
    chunk_s: float
    allowed_networks: str  # URL_ALLOWED_NETWORKS
    reconnect_max_s: float
    parent_pid: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "url": self.url,
                "directory": self.directory,
                "chunk_s": self.chunk_s,
                "allowed_networks": self.allowed_networks,
                "reconnect_max_s": self.reconnect_max_s,
                "parent_pid": self.parent_pid,
            }
        )

    @classmethod
    def from_json(cls, line: str) -> RecorderConfig:
        data = json.loads(line)
        return cls(
            url=str(data["url"]),
            directory=str(data["directory"]),
            chunk_s=float(data["chunk_s"]),
            allowed_networks=str(data["allowed_networks"]),
            reconnect_max_s=float(data["reconnect_max_s"]),
            parent_pid=int(data["parent_pid"]),
        )


@dataclass(frozen=True, slots=True)
class Written:
    name: str
    start: float  # wall clock of the file's time 0
    duration_s: float
    size: int

    def event(self) -> dict[str, Any]:
        return {
            "event": "segment",
            "name": self.name,
            "start": self.start,
            "duration": self.duration_s,
            "bytes": self.size,
        }


class Recorder:
    """Records one stream into `config.directory` until the process is stopped."""

    def __init__(self, config: RecorderConfig, emit: Emit, arrival: Arrival | None = None) -> None:
        self.config = config
        self.stream = parse_stream_url(config.url)
        self.allowed = parse_networks(config.allowed_networks)
        self.emit = emit
        self.arrival = arrival or read_now
        self.directory = Path(config.directory)

    def run_forever(self) -> None:
        while True:  # each round: connect, retrying with growing waits, until a connection recorded
            retrying = Retrying(
                stop=stop_never,
                wait=wait_exponential(multiplier=0.5, min=0.5, max=self.config.reconnect_max_s),
                retry=retry_if_exception_type(StreamFailure),
                before_sleep=self._failed,
                reraise=True,
            )
            error = retrying(self.session)
            self.emit({"event": "failed", "error": error, "retry_in": 0.0})

    def session(self) -> str:
        """One connection: record until it drops. Returns why it ended once it recorded something;
        StreamFailure when it recorded nothing."""
        opener = CheckedOpener(self.allowed, HLS_MAX_BYTES, READ_TIMEOUT_S) if self.is_hls else None
        try:
            with self._open(opener) as container:
                ended = record(container, self.directory, self.config.chunk_s, self.emit, self.arrival)
        finally:
            if opener is not None:
                opener.close()
        if ended.error is None:
            reason = "the stream ended"
        else:
            reason = self._reason(ended.error, opener, "the stream broke off")
        if not ended.recorded:
            raise StreamFailure(reason)
        return reason

    @property
    def is_hls(self) -> bool:
        return self.stream.kind is StreamKind.HLS

    @contextmanager
    def _open(self, opener: CheckedOpener | None) -> Iterator[InputContainer]:
        try:
            url = asyncio.run(connect_url(self.stream, self.allowed))
        except FetchError as exc:
            raise StreamFailure(str(exc)) from exc
        options = dict(_PROBE)
        if self.is_hls:
            options.update(http_persistent="0", live_start_index="-1")
        else:
            options["rtsp_transport"] = "tcp"
        try:
            container = av.open(
                url, mode="r", options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S), io_open=opener
            )
        except (av.error.FFmpegError, FetchError, OSError, ValueError) as exc:
            raise StreamFailure(self._reason(exc, opener, "cannot open the stream")) from exc
        with container:
            if not isinstance(container, InputContainer):
                raise StreamFailure("cannot open the stream for reading")
            yield container

    def _failed(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        retry_in = state.next_action.sleep if state.next_action is not None else 0.0
        self.emit({"event": "failed", "error": str(error), "retry_in": retry_in})

    @staticmethod
    def _reason(exc: BaseException, opener: CheckedOpener | None, what: str) -> str:
        if isinstance(exc, FetchError):
            detail = str(exc)
        elif opener is not None and opener.refusal is not None:  # FFmpeg's bare I/O error: ours said why
            detail = opener.refusal
        else:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"{what}: {detail}"


@dataclass(frozen=True, slots=True)
class Ended:
    recorded: bool  # some packets were kept (segments written)
    error: Exception | None  # what broke the connection off; None: the stream ended


def record(
    container: InputContainer,
    directory: Path,
    chunk_s: float,
    emit: Emit,
    arrival: Arrival | None = None,
) -> Ended:
    """Remux `container`'s first video and first audio stream into segments in `directory` until it ends
    or fails (the open segment is written too); `emit` hears "recording" at the first packet kept and each
    segment written. `arrival` says when a packet was read (default: now). StreamFailure: nothing to
    record in it."""
    arrival = arrival or read_now
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    kept = [s for s in (video, audio) if s is not None]
    if not kept:
        raise StreamFailure("the stream has neither video nor audio")
    cutter = Cutter(chunk_s, has_video=video is not None, has_audio=audio is not None)
    packets: list[Packet[Stream]] = []
    recorded = False
    error: Exception | None = None
    try:
        for packet in container.demux(kept):
            timing = _timing(packet, video, arrival(packet))
            if timing is None:
                continue
            decision = cutter.decide(timing)
            if decision in (Decision.CUT, Decision.CLOSE) and packets:
                emit(write_segment(directory, packets, cutter.closed_wall_clock).event())
                packets = []
            if decision in (Decision.CUT, Decision.APPEND):
                packets.append(packet)
                if not recorded:
                    recorded = True
                    emit({"event": "recording"})
    except (av.error.FFmpegError, FetchError) as exc:  # FetchError: an HLS request refused or failed
        error = exc
    if packets:
        emit(write_segment(directory, packets, cutter.wall_clock).event())
    return Ended(recorded, error)


def _timing(packet: Packet[Stream], video: Stream | None, arrival: float) -> PacketTime | None:
    """The packet's times in seconds; None for a packet without any (a demuxer's flush packet)."""
    times = _seconds(packet)
    if times is None:
        return None
    pts_s, dts_s = times
    kind = Kind.VIDEO if video is not None and packet.stream.index == video.index else Kind.AUDIO
    return PacketTime(kind, pts_s, dts_s, packet.is_keyframe, arrival)


def _seconds(packet: Packet[Stream]) -> tuple[float, float] | None:
    """(pts, dts) in seconds, either standing in for the other when missing; None when both are."""
    pts = packet.pts if packet.pts is not None else packet.dts
    dts = packet.dts if packet.dts is not None else packet.pts
    if pts is None or dts is None:
        return None
    return float(pts * packet.time_base), float(dts * packet.time_base)


def write_segment(
    directory: Path, packets: list[Packet[Stream]], wall_clock: Callable[[float], float]
) -> Written:
    """Remux `packets` (one segment, in arrival order) into a Matroska file named by its wall-clock start:
    written as a hidden .part, synced, renamed. Its time 0 is the packets' earliest dts."""
    times = [t for t in map(_seconds, packets) if t is not None]
    first_s = min(dts_s for _, dts_s in times)
    last_s = max(pts_s for pts_s, _ in times)
    start = wall_clock(first_s)
    name = segment_name(start)
    part = directory / part_name(name)
    with av.open(str(part), mode="w", format="matroska") as out:
        if not isinstance(out, OutputContainer):
            raise RuntimeError("cannot write a segment")
        out.metadata["creation_time"] = creation_time(start)
        streams: dict[int, Stream] = {}
        for packet in packets:
            source = packet.stream
            if source.index not in streams:
                streams[source.index] = out.add_stream_from_template(source)
        for packet in packets:
            shift = math.floor(first_s / packet.time_base)
            if packet.dts is not None:
                packet.dts -= shift
            packet.pts = packet.pts - shift if packet.pts is not None else packet.dts
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    fd = os.open(part, os.O_RDONLY)
    try:
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    os.replace(part, directory / name)
    return Written(name=name, start=start, duration_s=round(last_s - first_s, 3), size=size)


def die_with_parent(parent_pid: int) -> None:
    """The kernel kills this process when the orchestrator dies, even by SIGKILL (as decode workers)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the orchestrator died before the line above took effect
        os._exit(0)


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main() -> None:
    config = RecorderConfig.from_json(sys.stdin.readline())
    die_with_parent(config.parent_pid)
    Recorder(config, _emit).run_forever()


if __name__ == "__main__":
    main()
