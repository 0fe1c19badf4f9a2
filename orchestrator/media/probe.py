"""What a video or audio file holds, from its container header (PyAV): streams, codecs, duration, displayed
size, rotation, frame rate, sample rate, creation time. Runs in a decode worker process, not on the event
loop."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import av
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from orchestrator.media.images import MediaDecodeError

# Metadata keys that carry when a recording was made, in order of preference.
_CREATION_KEYS = ("creation_time", "com.apple.quicktime.creationdate")


@dataclass(frozen=True, slots=True)
class ProbeInfo:
    container: str  # the container format (demuxer) name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "mp3", "wav"
    duration_s: float  # 0.0 when the container does not say (decode_av then gives the decoded length)
    has_video: bool  # a real video stream (cover art attached to audio does not count)
    has_audio: bool
    video_codec: str | None
    audio_codec: str | None
    width: int  # as displayed (after rotation and pixel aspect ratio); 0 without video
    height: int
    rotation: int  # 0/90/180/270: degrees clockwise a player turns the stored frames to show them upright
    fps: float | None
    frame_count: int | None  # when the container says
    sample_rate: int | None
    channels: int | None
    creation_time: str | None  # ISO 8601


def probe(path: str) -> ProbeInfo:
    """Probe ``path``; ``MediaDecodeError`` when PyAV cannot open it or it has neither video nor audio."""
    with open_media(path) as container:
        video = video_stream(container)
        rotation = first_frame_rotation(container, video) if video is not None else None
        return probe_container(container, rotation=rotation)


@contextmanager
def open_media(path: str) -> Iterator[InputContainer]:
    """The container of ``path``, opened for reading the way prepare opens files: never through a symlink
    at the path (O_NOFOLLOW), never blocking (O_NONBLOCK: a FIFO swapped in after the hash would block
    the open forever), and only a regular file (a device would be read without end). PyAV reads the open
    file; its name still gives the demuxer its extension hint. ``MediaDecodeError`` with the reason."""
    try:
        fh = open(path, "rb", opener=open_regular)
    except MediaDecodeError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MediaDecodeError("cannot open media: the path is now a symlink (not followed)") from exc
        raise MediaDecodeError(f"cannot open media: {exc.strerror or exc}") from exc
    with fh:
        try:
            container = av.open(fh, mode="r")
        except av.error.InvalidDataError as exc:
            raise MediaDecodeError("not a readable video or audio file (invalid data)") from exc
        except av.error.FFmpegError as exc:
            raise MediaDecodeError(f"cannot open media: {exc.strerror or exc}") from exc
        except (OSError, ValueError) as exc:  # e.g. a path PyAV cannot even read
            raise MediaDecodeError(f"cannot open media: {exc}") from exc
        with container:
            if not isinstance(container, InputContainer):  # opened for reading, so never an output container
                raise MediaDecodeError("cannot open media for reading")
            yield container


def open_regular(path: str, flags: int) -> int:
    """An `open()` opener: never through a symlink, never blocking, only a regular file (MediaDecodeError)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MediaDecodeError(
                "no longer a regular file (a device, FIFO or socket took its place): not read"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def video_stream(container: InputContainer) -> VideoStream | None:
    """The first video stream that is a moving picture (not cover art attached to an audio file)."""
    for stream in container.streams.video:
        if stream.codec_context is not None and not stream.disposition & Disposition.attached_pic:
            return stream
    return None


def audio_stream(container: InputContainer) -> AudioStream | None:
    streams = [s for s in container.streams.audio if s.codec_context is not None]  # None: no decoder
    defaults = [s for s in streams if s.disposition & Disposition.default]
    return (defaults or streams)[0] if streams else None


def probe_container(container: InputContainer, rotation: int | None) -> ProbeInfo:
    """The probe of an open container. ``rotation`` (clockwise degrees) as read from a decoded frame's display
    matrix; None falls back to the stream's ``rotate`` tag."""
    video, audio = video_stream(container), audio_stream(container)
    if video is None and audio is None:
        raise MediaDecodeError("no video or audio stream")
    width = height = 0
    fps: float | None = None
    frame_count: int | None = None
    if video is not None:
        if rotation is None:
            rotation = _rotation_tag(video)
        width, height = displayed_size(video, rotation)
        rate = video.average_rate or video.guessed_rate
        fps = float(rate) if rate else None
        frame_count = video.frames or None
    return ProbeInfo(
        container=container.format.name,
        duration_s=_duration(container, video, audio),
        has_video=video is not None,
        has_audio=audio is not None,
        video_codec=video.codec_context.name if video is not None else None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        width=width,
        height=height,
        rotation=rotation or 0,
        fps=fps,
        frame_count=frame_count,
        sample_rate=(audio.codec_context.sample_rate or None) if audio is not None else None,
        channels=(audio.codec_context.channels or None) if audio is not None else None,
        creation_time=_creation_time(container),
    )


def frame_rotation(frame: VideoFrame) -> int:
    """Clockwise degrees (0/90/180/270) to turn a decoded frame upright, from its display matrix."""
    return _normalise(-float(frame.rotation))  # PyAV reads the matrix as counter-clockwise degrees


def first_frame_rotation(container: InputContainer, video: VideoStream) -> int | None:
    """Decode the first frame for its display matrix (PyAV exposes it on frames, not streams). None when the
    matrix does not rotate (or is absent) or the stream has no decodable frame at its start."""
    try:
        for packet in container.demux(video):
            for frame in packet.decode():
                return frame_rotation(frame) or None
            if packet.size == 0:  # flush packet at the end
                break
    except (av.error.FFmpegError, ValueError):
        return None
    return None


def displayed_size(video: VideoStream, rotation: int) -> tuple[int, int]:
    """Width and height a player shows (0, 0 when the stream does not say)."""
    width, height = video.codec_context.width, video.codec_context.height
    if not width or not height:
        return 0, 0
    sar = video.sample_aspect_ratio
    if sar and sar > 0 and sar != 1:
        width = max(1, round(width * Fraction(sar)))
    if rotation in (90, 270):
        width, height = height, width
    return width, height


def _rotation_tag(video: VideoStream) -> int:
    raw = next((v for k, v in video.metadata.items() if k.lower() == "rotate"), None)
    try:
        return _normalise(float(raw)) if raw is not None else 0
    except ValueError:
        return 0


def _normalise(degrees: float) -> int:
    return (round(degrees / 90) * 90) % 360


def _duration(container: InputContainer, video: VideoStream | None, audio: AudioStream | None) -> float:
    if container.duration is not None and container.duration > 0:
        return round(container.duration / av.time_base, 3)
    seconds = [
        float(s.duration * s.time_base)
        for s in (video, audio)
        if s is not None and s.duration and s.time_base is not None
    ]
    return round(max(seconds), 3) if seconds else 0.0


def _creation_time(container: InputContainer) -> str | None:
    sources = [container.metadata, *(s.metadata for s in container.streams)]
    for key in _CREATION_KEYS:
        for metadata in sources:
            value = metadata.get(key)
            parsed = _iso(value) if value else None
            if parsed is not None:
                return parsed
    return None


def _iso(value: str) -> str | None:
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.year <= 1970:  # an unset mp4 time reads as 1904 or 1970
        return None
    return when.isoformat()
