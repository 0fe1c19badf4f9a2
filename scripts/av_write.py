"""Write test media with PyAV: videos (shots of still or moving images, an audio track, a phone-style
rotation), audio files (wav, mp3, m4a) and truncated copies. Used by tests and benchmarks:

    from scripts.av_write import write_video, write_audio, truncate
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.stream import VideoStream
from numpy.typing import NDArray
from PIL import Image

Int16Array = NDArray[np.int16]
RGBArray = NDArray[np.uint8]

# Audio containers this module writes: format name for av.open, encoder.
AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("wav", "pcm_s16le"),
    "mp3": ("mp3", "libmp3lame"),
    "m4a": ("ipod", "aac"),
}


def default_video_codec() -> str:
    """libx264 where this PyAV build has it, else mpeg4."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(
    path: str | Path,
    frames: Iterable[tuple[RGBArray, float]],
    fps: int = 10,
    audio: Int16Array | None = None,
    sample_rate: int = 16000,
    rotation: int = 0,
    codec: str | None = None,
    audio_codec: str = "aac",
    *,
    gop: int | None = None,
    faststart: bool = False,
    rotate_tag: bool = False,
    creation_time: str | None = None,
) -> None:
    """Write an mp4 (or any container the suffix names) from (upright RGB frame, seconds shown) pairs.

    Each frame is repeated for round(seconds * fps) frames (at least one). ``rotation`` (0/90/180/270,
    clockwise, the `rotate` tag convention) stores the frames sideways and marks the stream with a display
    matrix the way a phone does, so a player (and ``probe``) shows them upright again. ``gop``: keyframe
    interval in frames (encoder default when None). ``faststart`` moves the index to the front, so a
    truncated copy still opens. ``rotate_tag`` marks the rotation with a `rotate` metadata tag instead of a
    display matrix (what older muxers and Matroska files carry).
    """
    if rotation % 90 or not 0 <= rotation < 360:
        raise ValueError(f"rotation must be 0, 90, 180 or 270, not {rotation}")
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        assert isinstance(out, OutputContainer)
        if creation_time is not None:
            out.metadata["creation_time"] = creation_time
        video: VideoStream | None = None
        audio_stream = _add_audio_stream(out, audio_codec, sample_rate) if audio is not None else None
        audio_writer = _AudioWriter(out, audio_stream, audio, sample_rate) if audio_stream else None
        pts = 0
        for frame, seconds in frames:
            stored = np.ascontiguousarray(np.rot90(frame, k=rotation // 90))  # k>0: counter-clockwise
            if video is None:
                video = _add_video_stream(out, codec or default_video_codec(), fps, stored, gop)
                if rotate_tag and rotation:
                    video.metadata["rotate"] = str(rotation)
                elif rotation:
                    # PyAV's degrees are counter-clockwise (as VideoFrame.rotation reads them); a phone's
                    # `rotate=90` means "turn 90 degrees clockwise to display".
                    video.set_display_rotation(-rotation)
            vf = av.VideoFrame.from_ndarray(stored, format="rgb24")
            for _ in range(max(1, round(seconds * fps))):
                vf.pts = pts
                out.mux(video.encode(vf))
                pts += 1
                if audio_writer is not None:
                    audio_writer.write_until(pts / fps)  # interleaved, as a camera writes
        if video is None:
            raise ValueError("a video needs at least one frame")
        out.mux(video.encode(None))
        if audio_writer is not None:
            audio_writer.write_until(None)


def write_audio(
    path: str | Path,
    samples: Int16Array,
    sample_rate: int = 16000,
    format: str = "wav",
    *,
    cover_jpeg: bytes | None = None,
    creation_time: str | None = None,
) -> None:
    """Write mono int16 ``samples`` as wav, mp3 or m4a. ``cover_jpeg`` (mp3 only) adds cover art as an
    attached picture, the way music files carry it."""
    if format not in AUDIO_FORMATS:
        raise ValueError(f"format must be one of {sorted(AUDIO_FORMATS)}, not {format!r}")
    container_format, codec = AUDIO_FORMATS[format]
    if codec not in av.codecs_available:
        raise RuntimeError(f"this PyAV build has no {codec} encoder")
    if cover_jpeg is not None and format != "mp3":
        raise ValueError("cover art is written for mp3 only")
    with av.open(str(path), "w", format=container_format) as out:
        assert isinstance(out, OutputContainer)
        if creation_time is not None:
            out.metadata["creation_time"] = creation_time
        stream = _add_audio_stream(out, codec, sample_rate)
        cover: VideoStream | None = None
        if cover_jpeg is not None:
            cover = _add_cover_stream(out, cover_jpeg)
        _encode_audio(out, stream, samples, sample_rate)
        if cover is not None and cover_jpeg is not None:
            packet = av.Packet(cover_jpeg)
            packet.stream = cover
            packet.pts = packet.dts = 0
            out.mux(packet)


def truncate(path: str | Path, fraction: float) -> None:
    """Cut the file to ``fraction`` of its size, in place (what an interrupted copy leaves)."""
    if not 0 <= fraction <= 1:
        raise ValueError("fraction must be within [0, 1]")
    p = Path(path)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * fraction)])


def textured(height: int, width: int, seed: int, colour: tuple[int, int, int] | None = None) -> RGBArray:
    """A distinct "shot": smooth random colour blobs (structure a 64x36 thumbnail still sees) with fine noise,
    optionally tinted towards ``colour``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    blobs = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    if colour is not None:
        blobs = 0.5 * blobs + 0.5 * np.asarray(colour, np.float32)
    noise = rng.normal(0, 8, (height, width, 1)).astype(np.float32)
    return np.asarray(np.clip(blobs + noise, 0, 255), dtype=np.uint8)


def pan(
    image: RGBArray, width: int, seconds: float, fps: int, px_per_s: float
) -> Iterable[tuple[RGBArray, float]]:
    """Frames of a camera panning right over ``image`` (wider than ``width``), for ``write_video``."""
    span = image.shape[1] - width
    for i in range(max(1, round(seconds * fps))):
        x = min(span, round(i / fps * px_per_s))
        yield np.ascontiguousarray(image[:, x : x + width]), 1 / fps


def tone(seconds: float, sample_rate: int = 16000, hz: float = 440.0, amplitude: int = 8000) -> Int16Array:
    """A sine tone with a little noise, int16 mono."""
    n = round(seconds * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    rng = np.random.default_rng(0)
    wave = amplitude * np.sin(2 * np.pi * hz * t) + rng.normal(0, amplitude / 20, n)
    return np.clip(wave, -32768, 32767).astype(np.int16)


def jpeg_bytes(rgb: RGBArray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _add_video_stream(
    out: OutputContainer, codec: str, fps: int, first: RGBArray, gop: int | None
) -> VideoStream:
    height, width = first.shape[:2]
    if codec in ("libx264", "h264") and (width % 2 or height % 2):
        raise ValueError(f"{codec} needs even frame sides, got {width}x{height}")
    options = {"preset": "veryfast"} if codec == "libx264" else {}
    stream = out.add_stream(codec, rate=fps, options=options)
    assert isinstance(stream, VideoStream)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, fps)
    if gop is not None:
        stream.codec_context.gop_size = gop
    return stream


def _add_audio_stream(out: OutputContainer, codec: str, sample_rate: int) -> AudioStream:
    stream = out.add_stream(codec, rate=sample_rate, layout="mono")
    assert isinstance(stream, AudioStream)
    return stream


def _add_cover_stream(out: OutputContainer, jpeg: bytes) -> VideoStream:
    with Image.open(io.BytesIO(jpeg)) as img:
        width, height = img.size
    stream: Any = out.add_stream("mjpeg")
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuvj420p"
    stream.disposition = av.stream.Disposition.attached_pic
    assert isinstance(stream, VideoStream)
    return stream


def _encode_audio(out: OutputContainer, stream: AudioStream, samples: Int16Array, sample_rate: int) -> None:
    _AudioWriter(out, stream, samples, sample_rate).write_until(None)


class _AudioWriter:
    """Encodes mono int16 samples in pieces, so audio can be interleaved with video."""

    def __init__(
        self, out: OutputContainer, stream: AudioStream, samples: Int16Array | None, sample_rate: int
    ) -> None:
        self._out, self._stream, self._rate = out, stream, sample_rate
        self._mono = np.ascontiguousarray(np.asarray(samples, dtype=np.int16).reshape(1, -1))
        self._done = 0

    def write_until(self, seconds: float | None) -> None:
        """Encode samples up to ``seconds`` (all of them, and flush the encoder, when None)."""
        total = self._mono.shape[1]
        end = total if seconds is None else min(total, round(seconds * self._rate))
        if end > self._done:
            frame = av.AudioFrame.from_ndarray(self._mono[:, self._done : end], format="s16", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self._done
            frame.time_base = Fraction(1, self._rate)
            self._out.mux(self._stream.encode(frame))
            self._done = end
        if seconds is None:
            self._out.mux(self._stream.encode(None))
