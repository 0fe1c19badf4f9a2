"""Decode a video or audio file into chunks: keyframes (upright JPEGs for the ML service), a thumbnail and
the chunk's audio as 16 kHz mono PCM. The function a decode worker process runs (``decode_pool.DecodePool``).

One demux pass does everything: audio is resampled to 16 kHz mono int16 as it comes; every video frame (at
most ~30 per second) is shrunk to 64x36 grey for the shot detector; every candidate step (0.5 s for 15 s
chunks) a frame is kept as an RGB copy no larger than ``ml_max_side``. Chunk boundaries are settled as the
pass moves on (``ChunkPlanner``), so only the candidates of the chunk still open are held: memory stays
bounded whatever the file's length (apart from the whole file's audio, 32 KB per second). No seeking: a seek
costs a decode from the previous keyframe (seconds of video with long GOPs) per keyframe; a candidate costs
one rescale.
"""

from __future__ import annotations

import bisect
import io
from dataclasses import dataclass, field, replace
from fractions import Fraction

import av
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter
from numpy.typing import NDArray
from PIL import Image

from orchestrator.media.chunking import (
    DEFAULT_SCENE_THRESHOLD,
    GREY_SIZE,
    ChunkPlanner,
    CutDetector,
    grey_difference,
    keyframe_targets,
)
from orchestrator.media.images import MediaDecodeError
from orchestrator.media.probe import (
    ProbeInfo,
    audio_stream,
    displayed_size,
    frame_rotation,
    open_media,
    probe_container,
    video_stream,
)

__all__ = ["AVOptions", "DecodedAV", "DecodedChunk", "Keyframe", "ProbeInfo", "decode_av"]

SAMPLE_RATE = 16000
_DETECT_STEP_S = 1 / 32  # shot detector: every frame up to ~30 fps, every other one at 60 fps
_MIN_CANDIDATE_STEP_S = 0.5
_CANDIDATES_PER_CHUNK = 30  # the candidate step grows with chunk_s so that memory does not
_MAX_DECODE_ERRORS = 1000  # a stream that keeps failing is not worth reading to its end


@dataclass(frozen=True, slots=True)
class AVOptions:
    chunk_s: float = 15.0
    min_chunk_s: float = 4.0
    keyframes_per_chunk: int = 3
    ml_max_side: int = 640  # keyframe JPEG longest side (for the ML service)
    thumb_side: int = 256  # chunk thumbnail longest side
    jpeg_quality: int = 85
    audio_overlap_s: float = 0.5  # a chunk's audio starts this much earlier (not before 0) and ends later
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD  # mean abs grey difference (0-255) that is a shot change
    max_duration_s: float = 6 * 3600.0  # longer files fail with a reason
    near_duplicate_threshold: float = 5.0  # mean abs grey diff to the last kept keyframe below which: skip

    def __post_init__(self) -> None:
        if self.chunk_s <= 0 or not 0 <= self.min_chunk_s <= self.chunk_s:
            raise ValueError("need chunk_s > 0 and 0 <= min_chunk_s <= chunk_s")
        if self.keyframes_per_chunk < 1 or self.ml_max_side < 16 or self.thumb_side < 16:
            raise ValueError("need keyframes_per_chunk >= 1 and image sides >= 16")
        if not 1 <= self.jpeg_quality <= 95 or self.audio_overlap_s < 0:
            raise ValueError("need 1 <= jpeg_quality <= 95 and audio_overlap_s >= 0")


@dataclass(frozen=True, slots=True)
class Keyframe:
    t_s: float  # absolute time in the file
    jpeg: bytes  # upright (rotation applied), longest side <= ml_max_side, RGB JPEG
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class DecodedChunk:
    index: int
    start_s: float
    end_s: float
    keyframes: list[Keyframe]  # [] for audio-only files
    thumbnail_jpeg: bytes | None  # from the chunk's middle kept keyframe; None for audio-only
    audio_pcm: bytes | None  # int16 LE mono 16 kHz covering [audio_start_s, audio_end_s]; None without audio
    audio_start_s: float
    audio_end_s: float
    cuts: tuple[float, ...] = ()  # shot changes inside (start_s, end_s), in time order


@dataclass(frozen=True, slots=True)
class DecodedAV:
    probe: ProbeInfo
    media_type: str  # "video" | "audio"
    chunks: list[DecodedChunk]


def decode_av(path: str, options: AVOptions) -> DecodedAV:
    """Probe, decode and chunk ``path``. ``MediaDecodeError`` (with a reason) when it cannot be decoded."""
    with open_media(path) as container:
        return _Decoder(container, options).run()


@dataclass(slots=True)
class _Candidate:
    t: float
    rgb: NDArray[np.uint8]  # stored orientation, at most ml_max_side on its longest displayed side
    grey: NDArray[np.uint8]


@dataclass(slots=True)
class _Audio:
    resampler: AudioResampler = field(default_factory=lambda: _resampler())
    pcm: bytearray = field(default_factory=bytearray)  # copies: a frame's array would keep its ~27 KB buffer
    first_t: float | None = None

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    def add(self, frame: AudioFrame, t: float | None) -> None:
        if self.first_t is None:
            self.first_t = t or 0.0
        try:
            outs = self.resampler.resample(frame)
        except ValueError:  # the stream changed format mid-way: start a resampler for the new one
            self._flush()
            self.resampler = _resampler()
            outs = self.resampler.resample(frame)
        self._keep(outs)

    def finish(self) -> NDArray[np.int16] | None:
        """The whole track from t=0 (zeros before its first sample), or None when nothing decoded."""
        self._flush()
        if self.first_t is None or self.samples == 0:
            return None
        pcm = np.frombuffer(self.pcm, dtype=np.int16)
        offset = round(self.first_t * SAMPLE_RATE)
        if offset > 0:
            pcm = np.concatenate([np.zeros(offset, np.int16), pcm])
        elif offset < 0:
            pcm = pcm[-offset:]
        return pcm

    def _flush(self) -> None:
        try:
            self._keep(self.resampler.resample(None))
        except (ValueError, av.error.FFmpegError):
            pass

    def _keep(self, frames: list[AudioFrame]) -> None:
        for out in frames:  # packed s16 mono: the first plane holds the samples (then padding)
            self.pcm += memoryview(out.planes[0])[: out.samples * 2]


def _resampler() -> AudioResampler:
    return AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


class _Decoder:
    def __init__(self, container: InputContainer, options: AVOptions) -> None:
        self.container = container
        self.options = options
        self.video = video_stream(container)
        self.audio_stream = audio_stream(container)
        self.info = probe_container(container, rotation=None)
        if self.info.duration_s > options.max_duration_s:
            raise MediaDecodeError(
                f"too long: {self.info.duration_s:.0f} s exceeds the {options.max_duration_s:.0f} s limit"
            )
        start = container.start_time
        self.t0 = start / av.time_base if start is not None and start > 0 else 0.0
        self.planner = ChunkPlanner(options)
        self.detector = CutDetector(threshold=options.scene_threshold)
        self.candidate_step = max(_MIN_CANDIDATE_STEP_S, options.chunk_s / _CANDIDATES_PER_CHUNK)
        self.candidates: list[_Candidate] = []
        self.cuts: list[float] = []  # every shot change found (a few per minute: kept for the whole file)
        self.audio = _Audio()
        self.pcm: NDArray[np.int16] | None = None
        self.rotation: int | None = None
        self.grey_reformatter = VideoReformatter()
        self.rgb_reformatter = VideoReformatter()
        self.rgb_size: tuple[int, int] | None = None
        self.coded_size = (0, 0)
        self.video_frames = 0
        self.video_end = 0.0
        self.last_video_t: float | None = None
        self.next_detect_t = 0.0
        self.next_candidate_t = 0.0
        self.pending: list[tuple[float, float]] = []  # settled chunks; their audio is cut at the end
        self.keyframes: dict[tuple[float, float], tuple[list[Keyframe], bytes | None]] = {}
        self.errors = 0
        rate = (self.video.average_rate or self.video.guessed_rate) if self.video is not None else None
        self.frame_s = float(1 / rate) if rate else 1 / 25

    def run(self) -> DecodedAV:
        self._first_pass()
        if self.rotation is not None:
            width, height = self.info.width, self.info.height
            if self.video is not None:
                width, height = displayed_size(self.video, self.rotation)
            self.info = replace(self.info, rotation=self.rotation, width=width, height=height)
        self.pcm = self.audio.finish()
        audio_end = len(self.pcm) / SAMPLE_RATE if self.pcm is not None else 0.0
        if self.video_frames == 0 and self.pcm is None:
            raise MediaDecodeError("no decodable video or audio (corrupt or truncated)")
        last_cut = self.detector.flush()
        if last_cut is not None:
            self.planner.add_cut(last_cut)
            self.cuts.append(last_cut)
        extent = max(self.video_end, audio_end)
        if not self.info.duration_s:  # the container did not say
            self.info = replace(self.info, duration_s=round(extent, 3))
        for window in self.planner.finish(extent):
            self._settle(window)
        media_type = "video" if self.video_frames else "audio"
        chunks = [self._chunk(i, window, extent) for i, window in enumerate(self.pending)]
        return DecodedAV(probe=self.info, media_type=media_type, chunks=chunks)

    def _first_pass(self) -> None:
        streams = [s for s in (self.video, self.audio_stream) if s is not None]
        try:
            for packet in self.container.demux(streams):
                try:
                    frames = packet.decode()
                except (av.error.FFmpegError, ValueError):
                    self._error()
                    continue
                for frame in frames:
                    if isinstance(frame, VideoFrame):
                        self._video_frame(frame)
                    elif isinstance(frame, AudioFrame):
                        self._audio_frame(frame)
        except av.error.FFmpegError:
            pass  # a truncated or damaged file ends here: keep what was decoded

    def _error(self) -> None:
        self.errors += 1
        if self.errors > _MAX_DECODE_ERRORS and self.video_frames == 0 and self.audio.samples == 0:
            raise MediaDecodeError("no decodable video or audio (every packet failed to decode)")

    def _time(self, t: float | None) -> float | None:
        return None if t is None else max(0.0, t - self.t0)

    def _check_length(self, t: float) -> None:
        if t > self.options.max_duration_s:
            raise MediaDecodeError(f"too long: exceeds the {self.options.max_duration_s:.0f} s limit")

    def _audio_frame(self, frame: AudioFrame) -> None:
        t = self._time(frame.time)
        if t is not None:
            self._check_length(t)
        self.audio.add(frame, t)

    def _video_frame(self, frame: VideoFrame) -> None:
        t = self._time(frame.time)
        if t is None:  # no timestamp: assume a constant rate
            t = 0.0 if self.last_video_t is None else self.last_video_t + self.frame_s
        self._check_length(t)
        if self.rotation is None:
            self.rotation = frame_rotation(frame) or self.info.rotation  # display matrix, else `rotate` tag
        self.video_frames += 1
        self.last_video_t = t
        duration = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
        self.video_end = max(self.video_end, t + (duration or self.frame_s))
        if t < self.next_detect_t and self.video_frames > 1:
            return
        self.next_detect_t = t + _DETECT_STEP_S
        grey_frame = self.grey_reformatter.reformat(
            frame, GREY_SIZE[0], GREY_SIZE[1], "gray", interpolation=Interpolation.AREA
        )
        grey = np.asarray(grey_frame.to_ndarray(), dtype=np.uint8)
        cut = self.detector.push(t, grey)
        if cut is not None:
            self.planner.add_cut(cut)
            self.cuts.append(cut)
        if t >= self.next_candidate_t or not self.candidates:
            self.next_candidate_t = t + self.candidate_step
            self.candidates.append(_Candidate(t, self._rgb(frame), grey))
        if self.detector.settled_s is not None:
            for window in self.planner.ready(self.detector.settled_s):
                self._settle(window)

    def _rgb(self, frame: VideoFrame) -> NDArray[np.uint8]:
        if self.rgb_size is None or (frame.width, frame.height) != self.coded_size:
            self.coded_size = (frame.width, frame.height)
            self.rgb_size = _fit_size(frame.width, frame.height, self._sar(), self.options.ml_max_side)
        width, height = self.rgb_size
        out = self.rgb_reformatter.reformat(frame, width, height, "rgb24", interpolation=Interpolation.AREA)
        return np.asarray(out.to_ndarray(), dtype=np.uint8)

    def _sar(self) -> Fraction:
        sar = self.video.sample_aspect_ratio if self.video is not None else None
        return Fraction(sar) if sar and sar > 0 else Fraction(1)

    def _settle(self, window: tuple[float, float]) -> None:
        """A chunk's boundaries are final: pick its keyframes now and let go of the older candidates."""
        self.pending.append(window)
        if self.candidates:
            self.keyframes[window] = self._pick_keyframes(window)
            later = [c for c in self.candidates if c.t >= window[1]]
            self.candidates = later or self.candidates[-1:]  # keep the last frame for a chunk past the video

    def _cuts_in(self, window: tuple[float, float]) -> list[float]:
        """The shot changes strictly inside ``window`` (cuts are found in time order: a bisect, not a scan of
        the whole file's)."""
        start, end = window
        return self.cuts[bisect.bisect_right(self.cuts, start) : bisect.bisect_left(self.cuts, end)]

    def _pick_keyframes(self, window: tuple[float, float]) -> tuple[list[Keyframe], bytes | None]:
        start, end = window
        inside = [c for c in self.candidates if start <= c.t < end] or [
            min(self.candidates, key=lambda c: abs(c.t - (start + end) / 2))
        ]
        chosen: list[_Candidate] = []
        for target in keyframe_targets(window, self._cuts_in(window), self.options.keyframes_per_chunk):
            best = min(inside, key=lambda c: abs(c.t - target))
            if not chosen or chosen[-1] is not best:
                chosen.append(best)
        kept: list[_Candidate] = []
        for cand in chosen:
            if kept and grey_difference(kept[-1].grey, cand.grey) < self.options.near_duplicate_threshold:
                continue
            kept.append(cand)
        rotation = self.rotation or 0
        images = [Image.fromarray(np.rot90(c.rgb, k=-(rotation // 90))) for c in kept]  # k<0: clockwise
        keyframes = [
            Keyframe(
                t_s=round(c.t, 3),
                jpeg=_jpeg(img, self.options.jpeg_quality),
                width=img.width,
                height=img.height,
            )
            for c, img in zip(kept, images, strict=True)
        ]
        middle = images[len(images) // 2].copy()
        middle.thumbnail((self.options.thumb_side, self.options.thumb_side), Image.Resampling.LANCZOS)
        return keyframes, _jpeg(middle, self.options.jpeg_quality)

    def _chunk(self, index: int, window: tuple[float, float], extent: float) -> DecodedChunk:
        start, end = window
        overlap = self.options.audio_overlap_s
        a_start = round(max(0.0, start - overlap), 3)
        a_end = round(min(max(extent, end), end + overlap), 3)
        keyframes, thumbnail = self.keyframes.get(window, ([], None))
        return DecodedChunk(
            index=index,
            start_s=start,
            end_s=end,
            keyframes=keyframes,
            thumbnail_jpeg=thumbnail,
            audio_pcm=self._pcm(a_start, a_end) if self.pcm is not None else None,
            audio_start_s=a_start,
            audio_end_s=a_end,
            cuts=tuple(round(c, 3) for c in self._cuts_in(window)),
        )

    def _pcm(self, start_s: float, end_s: float) -> bytes:
        assert self.pcm is not None
        first = round(start_s * SAMPLE_RATE)
        count = max(0, round(end_s * SAMPLE_RATE) - first)
        part = self.pcm[first : first + count]
        if part.size < count:  # the audio track ends before the video: silence
            part = np.concatenate([part, np.zeros(count - part.size, np.int16)])
        return part.astype("<i2", copy=False).tobytes()


def _fit_size(width: int, height: int, sar: Fraction, max_side: int) -> tuple[int, int]:
    """Output size (stored orientation) with square pixels and the longest side at most ``max_side``."""
    shown_w = width * sar
    longest = shown_w if shown_w > height else Fraction(height)
    scale = min(Fraction(1), Fraction(max_side) / longest)
    return max(1, round(shown_w * scale)), max(1, round(height * scale))


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
