"""A programme for live streams: known sentences spoken at known times (espeak-ng) over a small picture that
changes every second, as an mp4 (H.264 with a keyframe every second, AAC) that an RTSP server
(tests/support/rtsp_server.py) or an HLS writer (`write_live_hls`) plays in real time. Used by
tests/api/test_streams.py and scripts/bench_source_live.py.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer, OutputContainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.av_write import textured, write_video
from scripts.speech import SAMPLE_RATE, VOICES, silence, synthesize, trim_silence

FPS = 5
SIZE = (160, 96)  # width, height: small, the ML service's cost per keyframe stays low


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    start_s: float  # when its speech starts in the programme
    end_s: float


@dataclass(frozen=True, slots=True)
class Programme:
    path: Path
    duration_s: float
    lines: tuple[Line, ...]


def write_programme(
    path: Path,
    sentences: list[str],
    lead_s: float = 1.0,
    gap_s: float = 1.5,
    tail_s: float = 1.0,
    slot_s: float | None = None,
) -> Programme:
    """The sentences one after the other (`gap_s` of silence between), with `lead_s` before the first
    and `tail_s` after the last; each second of picture is a distinct texture. With `slot_s`, sentence i
    starts at `lead_s + i * slot_s` instead (each within its slot: a stream cut into segments of
    `slot_s` hears each sentence whole)."""
    audio = [silence(lead_s)]
    lines: list[Line] = []
    t = lead_s
    for i, text in enumerate(sentences):
        speech = trim_silence(synthesize(text, VOICES["low"]))
        seconds = len(speech) / SAMPLE_RATE
        if slot_s is not None:
            start = lead_s + i * slot_s
            if seconds > slot_s - lead_s or t > start:
                raise ValueError(f"{text!r} ({seconds:.2f} s) does not fit its {slot_s:g} s slot")
            audio.append(silence(start - t))
            t = start
        lines.append(Line(text, round(t, 3), round(t + seconds, 3)))
        pause = 0.0 if slot_s is not None else gap_s
        audio += [speech, silence(pause)]
        t += seconds + pause
    audio.append(silence(tail_s))
    samples = np.concatenate(audio)
    duration = len(samples) / SAMPLE_RATE
    width, height = SIZE
    frames = [(textured(height, width, second), 1.0) for second in range(int(np.ceil(duration)))]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, fps=FPS, audio=samples, sample_rate=SAMPLE_RATE, gop=FPS)
    return Programme(path, round(duration, 3), tuple(lines))


class LiveHLS:
    """Plays an mp4 into a live HLS playlist in `directory` (FFmpeg's hls muxer, packets copied), paced in
    real time on a thread of its own: the playlist grows by a segment every `segment_s`. `started_at` is
    the wall clock of the programme's time 0."""

    def __init__(self, media: Path, directory: Path, segment_s: float = 1.0) -> None:
        self.media = media
        self.directory = directory
        self.segment_s = segment_s
        self.started_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-hls", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self._play()
        except BaseException as exc:  # seen by the test (self.error)
            self.error = exc

    def _play(self) -> None:
        options = {
            "hls_time": f"{self.segment_s:g}",
            "hls_list_size": "0",
            "hls_playlist_type": "event",
            "hls_segment_type": "mpegts",
        }
        with (
            av.open(str(self.media)) as source,
            av.open(str(self.directory / "live.m3u8"), "w", format="hls", options=options) as out,
        ):
            assert isinstance(source, InputContainer) and isinstance(out, OutputContainer)
            streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
            self.started_at = time.time()
            for packet in source.demux():
                if packet.dts is None:
                    continue
                due = self.started_at + float(packet.dts * packet.time_base) - time.time()
                if due > 0 and self._stop.wait(due):
                    return
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
