"""Where a live stream's recording is cut into segment files, and what each is called (pure: no I/O).

A segment starts at a video keyframe (a file that starts elsewhere cannot be decoded from its start) and
ends before the first video keyframe at least `chunk_s` after its start; an audio-only stream is cut by
time alone. Packets before the first keyframe are dropped. A jump of the stream's timestamps (a
discontinuity) ends the segment and the wall clock is learnt anew.

The wall clock: a live packet arrives when it is live, give or take the network, so the stream's time 0
is live at about `arrival - dts` of each packet; the smallest value seen is the estimate (packets
buffered while the demuxer probed the stream arrive late, never early). Audio packets set it when the
stream has audio (their times are not reordered, and what is searched is mostly what was said). A
segment's wall-clock start is that estimate plus its earliest dts (its file's time 0), decided when it
closes.

Names sort by time: `YYYYMMDDTHHMMSS.mmmZ.mkv`, the UTC start. A segment being written is the hidden
`.<name>.part` beside it (no scan sees it), renamed when closed.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime

EXTENSION = ".mkv"  # Matroska takes nearly any codec a camera sends, and carries creation_time
PART_SUFFIX = ".part"
_NAME = re.compile(r"(\d{8}T\d{6}\.\d{3})Z\.mkv")
# A timestamp jump larger than this (either way) is a discontinuity, not late packets.
JUMP_S = 30.0
# A segment that found no keyframe to end at for this many chunk lengths is cut anyway (bounded memory).
MAX_CHUNKS = 8
# Packet times carry the transport's rounding (RTP's 90 kHz ticks: a keyframe 4 s on reads 3.99999 s).
CUT_SLACK_S = 0.05


class Kind(enum.Enum):
    VIDEO = "video"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class PacketTime:
    """What the cutter needs of one packet of a kept stream: times in seconds of the stream's clock."""

    kind: Kind
    pts_s: float
    dts_s: float
    keyframe: bool
    arrival: float  # wall clock (unix seconds) when it was read


class Decision(enum.Enum):
    DROP = "drop"  # before the first keyframe: nothing to decode it from
    APPEND = "append"  # into the open segment
    CUT = "cut"  # close the open segment (if any) and start a new one with this packet
    CLOSE = "close"  # a discontinuity: close the open segment; this packet is dropped (no keyframe)


class Cutter:
    """Decides, packet by packet, where segments end (see the module). One per connection."""

    def __init__(self, chunk_s: float, has_video: bool, has_audio: bool = True) -> None:
        if chunk_s <= 0:
            raise ValueError("chunk_s must be positive")
        self.chunk_s = chunk_s
        self.has_video = has_video
        self._clock_kind = Kind.AUDIO if has_audio or not has_video else Kind.VIDEO
        self.start_s: float | None = None  # the open segment's first packet (pts), None when none is open
        self._last_dts_s: float | None = None
        self._offset: float | None = None  # wall clock of the stream's time 0 (see the module)
        self._provisional = True  # the offset is not from a packet of the clock's kind yet
        self._closing: float | None = None  # the offset of the segment the last CUT or CLOSE ended

    def decide(self, packet: PacketTime) -> Decision:
        """What to do with `packet`; on CUT or CLOSE, `closed_wall_clock` places the segment it ended."""
        self._closing = self._offset
        last, self._last_dts_s = self._last_dts_s, packet.dts_s
        jumped = last is not None and abs(packet.dts_s - last) > JUMP_S
        if jumped:
            self._offset, self._provisional = None, True  # the stream's clock starts anew
        offset = packet.arrival - packet.dts_s  # dts: packets are sent in decoding order
        if packet.kind is self._clock_kind:
            fresh = self._offset is None or self._provisional
            self._offset = offset if fresh or self._offset is None else min(self._offset, offset)
            self._provisional = False
        elif self._offset is None or self._provisional:  # until the clock's kind speaks
            self._offset = offset if self._offset is None else min(self._offset, offset)
        if self.has_video:
            starts = packet.kind is Kind.VIDEO and packet.keyframe
        else:
            starts = packet.kind is Kind.AUDIO
        if self.start_s is None or jumped:
            if starts:
                self.start_s = packet.pts_s
                return Decision.CUT
            if self.start_s is not None:  # a jump without a keyframe to start from
                self.start_s = None
                return Decision.CLOSE
            return Decision.DROP
        elapsed = packet.pts_s - self.start_s
        if (starts and elapsed >= self.chunk_s - CUT_SLACK_S) or elapsed >= self.chunk_s * MAX_CHUNKS:
            self.start_s = packet.pts_s
            return Decision.CUT
        return Decision.APPEND

    def wall_clock(self, stream_s: float) -> float:
        """The wall clock (unix seconds) at which the stream's time `stream_s` was live."""
        if self._offset is None:
            raise RuntimeError("no packet seen yet")
        return self._offset + stream_s

    def closed_wall_clock(self, stream_s: float) -> float:
        """`wall_clock` as it was for the segment the last CUT or CLOSE ended (a discontinuity's packet
        restarts the clock, the segment before it keeps the old one)."""
        if self._closing is None:
            raise RuntimeError("no segment was closed")
        return self._closing + stream_s


def segment_name(start: float) -> str:
    """The file name of a segment that starts at wall clock `start` (unix seconds)."""
    when = datetime.fromtimestamp(start, UTC)
    return f"{when:%Y%m%dT%H%M%S}.{when.microsecond // 1000:03d}Z{EXTENSION}"


def part_name(name: str) -> str:
    """The hidden name a segment has while it is written."""
    return f".{name}{PART_SUFFIX}"


def segment_start(name: str) -> float | None:
    """The wall-clock start a segment's name says; None when it is not a segment's name."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC).timestamp()


def creation_time(start: float) -> str:
    """ISO 8601 UTC, as a container's creation_time carries it (what the probe reads as taken_at)."""
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
