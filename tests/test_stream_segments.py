"""The live-stream recorder's pieces without a network: where segments are cut, what they are called, the
wall clock they carry (segments.py); the recorder remuxing a local file (recorder.record) as it would a
stream; stream URLs (stream_urls.py) and the HLS opener's checks (hls_open.py)."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import pytest
from av.container import InputContainer

from orchestrator.media.probe import probe
from orchestrator.sources.addresses import parse_networks
from orchestrator.sources.fetch import FetchError
from orchestrator.sources.hls_open import CheckedOpener
from orchestrator.sources.recorder import Recorder, RecorderConfig, StreamFailure, record
from orchestrator.sources.segments import (
    Cutter,
    Decision,
    Kind,
    PacketTime,
    part_name,
    segment_name,
    segment_start,
)
from orchestrator.sources.stream_urls import StreamKind, StreamURLError, parse_stream_url
from scripts.av_write import textured, tone, write_video

BASE = 1_800_000_000.0  # a wall clock (2027-01-15)


def video(pts: float, key: bool, arrival: float | None = None) -> PacketTime:
    return PacketTime(Kind.VIDEO, pts, pts, key, BASE + pts if arrival is None else arrival)


def audio(pts: float, arrival: float | None = None) -> PacketTime:
    return PacketTime(Kind.AUDIO, pts, pts, True, BASE + pts if arrival is None else arrival)


def test_cuts_at_the_first_keyframe_a_chunk_on_with_transport_rounding() -> None:
    cutter = Cutter(4.0, has_video=True)
    assert cutter.decide(audio(0.0)) is Decision.DROP  # nothing to decode from before a keyframe
    assert cutter.decide(video(0.5, key=False)) is Decision.DROP
    assert cutter.decide(video(1.0, key=True)) is Decision.CUT
    assert cutter.decide(audio(1.1)) is Decision.APPEND
    assert cutter.decide(video(4.5, key=True)) is Decision.APPEND  # 3.5 s on: too early
    assert cutter.decide(video(5.2, key=False)) is Decision.APPEND  # past 4 s, but no keyframe
    # RTP's 90 kHz rounding: 3.99999 s after the segment's start is the keyframe that ends it.
    assert cutter.decide(video(4.99999, key=True)) is Decision.CUT


def test_audio_only_streams_are_cut_by_time() -> None:
    cutter = Cutter(2.0, has_video=False)
    decisions = [cutter.decide(audio(t / 10)) for t in range(0, 45, 5)]
    cuts = [t / 10 for t, d in zip(range(0, 45, 5), decisions, strict=True) if d is Decision.CUT]
    assert cuts == [0.0, 2.0, 4.0]


def test_a_segment_without_keyframes_is_cut_anyway() -> None:
    cutter = Cutter(1.0, has_video=True)
    assert cutter.decide(video(0.0, key=True)) is Decision.CUT
    decisions = [cutter.decide(video(t / 10, key=False)) for t in range(1, 100)]
    assert Decision.CUT in decisions  # bounded: at MAX_CHUNKS chunk lengths


def test_the_wall_clock_is_the_earliest_arrival_and_a_jump_closes_the_segment() -> None:
    cutter = Cutter(4.0, has_video=True)
    # Packets buffered while the stream was probed arrive together, late; live ones on time.
    cutter.decide(video(0.0, key=True, arrival=BASE + 3.0))
    cutter.decide(audio(0.0, arrival=BASE + 3.0))
    assert cutter.wall_clock(0.0) == pytest.approx(BASE + 3.0, abs=0.001)
    cutter.decide(audio(5.0, arrival=BASE + 5.2))
    assert cutter.wall_clock(0.0) == pytest.approx(BASE + 0.2, abs=0.001)
    # Video does not move an audio stream's clock (its dts are reordered: earlier than they went live).
    cutter.decide(video(6.0, key=False, arrival=BASE + 5.5))
    assert cutter.wall_clock(0.0) == pytest.approx(BASE + 0.2, abs=0.001)
    # A discontinuity: the open segment closes with the old clock, the new one starts at the next keyframe.
    assert cutter.decide(audio(500.0, arrival=BASE + 7.0)) is Decision.CLOSE
    assert cutter.closed_wall_clock(0.0) == pytest.approx(BASE + 0.2, abs=0.001)
    assert cutter.wall_clock(500.0) == pytest.approx(BASE + 7.0, abs=0.001)
    assert cutter.decide(video(500.5, key=False)) is Decision.DROP
    assert cutter.decide(video(501.0, key=True, arrival=BASE + 8.0)) is Decision.CUT


def test_names_sort_by_time_and_say_it() -> None:
    starts = [BASE + 0.25, BASE + 4.0, BASE + 12.999, BASE + 3600.5]
    names = [segment_name(s) for s in starts]
    assert names == sorted(names)
    assert names[0] == "20270115T080000.250Z.mkv"
    assert [segment_start(n) for n in names] == pytest.approx(starts, abs=0.001)
    assert part_name(names[0]) == ".20270115T080000.250Z.mkv.part"  # hidden: no scan sees it
    for other in ("live.mkv", ".20270115T080000.250Z.mkv.part", "../20270115T080000.250Z.mkv"):
        assert segment_start(other) is None


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13 s of video (a keyframe every second, a new picture each second) with a tone."""
    path = tmp_path_factory.mktemp("camera") / "camera.mp4"
    frames = [(textured(64, 96, second), 1.0) for second in range(13)]
    write_video(path, frames, fps=5, audio=tone(13.0), gop=5)
    return path


def replayed(packet: Any) -> float:
    """A file read as if it were live from BASE on: each packet arrives when it is due."""
    dts = packet.dts if packet.dts is not None else packet.pts
    return BASE if dts is None else BASE + float(dts * packet.time_base)


def test_record_remuxes_a_file_into_named_segments_with_their_creation_time(
    camera_file: Path, tmp_path: Path
) -> None:
    events: list[dict[str, Any]] = []
    with av.open(str(camera_file)) as container:
        assert isinstance(container, InputContainer)
        ended = record(container, tmp_path, 4.0, events.append, replayed)
    assert ended.recorded and ended.error is None
    assert events[0] == {"event": "recording"}
    segments = [e for e in events if e["event"] == "segment"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [s["name"] for s in segments]  # written in time order, no .part left
    assert len(names) == 4  # 13 s in cuts at 4, 8, 12
    for segment in segments:
        info = probe(str(tmp_path / segment["name"]))
        assert info.has_video and info.has_audio and info.video_codec == "h264"
        assert abs(info.duration_s - segment["duration"]) < 0.5
        taken = datetime.fromisoformat(info.creation_time or "").timestamp()
        assert taken == pytest.approx(segment["start"], abs=0.001)
        assert taken == pytest.approx(segment_start(segment["name"]), abs=0.001)
        with av.open(str(tmp_path / segment["name"])) as out:  # each starts with a keyframe
            first = next(p for p in out.demux(video=0) if p.size)
            assert first.is_keyframe
    durations = [s["duration"] for s in segments]
    assert all(3.5 < d < 4.6 for d in durations[:3]) and durations[3] < 1.5
    # Replayed from BASE: a segment's time 0 (its earliest dts: the keyframe's, decoded before it shows) is
    # its place in the file.
    assert [s["start"] - BASE for s in segments[1:]] == pytest.approx([3.6, 7.6, 11.6], abs=0.05)


def test_a_refused_address_is_a_failed_connection_not_a_crash(tmp_path: Path) -> None:
    config = RecorderConfig("rtsp://10.9.8.7:554/live", str(tmp_path), 4.0, "", 1.0, 0)
    with pytest.raises(StreamFailure, match=r"10\.9\.8\.7 is private"):
        Recorder(config, lambda _: None).session()


def test_an_hls_server_that_refuses_is_a_failed_connection_not_a_crash(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = RecorderConfig(f"http://127.0.0.1:{port}/live.m3u8", str(tmp_path), 4.0, "127.0.0.1/32", 1.0, 0)
    with pytest.raises(StreamFailure, match="unreachable"):
        Recorder(config, lambda _: None).session()


@pytest.fixture
def redirector() -> Iterator[str]:
    """A loopback HTTP server whose every answer redirects to a private address."""

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://10.0.0.1/secret.ts")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Redirect))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_every_hls_request_is_judged_redirects_too(redirector: str) -> None:
    opener = CheckedOpener(parse_networks("127.0.0.0/8"), 1 << 20, 5.0)
    try:
        with pytest.raises(FetchError, match=r"10\.0\.0\.1 is private"):
            opener(f"{redirector}/live.m3u8", 1, {})
        assert opener.refusal is not None and "10.0.0.1" in opener.refusal
        with pytest.raises(FetchError, match="credentials"):
            opener("http://user:pw@127.0.0.1/x.ts", 1, {})
        with pytest.raises(PermissionError):
            opener(f"{redirector}/out.ts", 2, {})  # AVIO_FLAG_WRITE
    finally:
        opener.close()


def test_stream_urls() -> None:
    camera = parse_stream_url("rtsp://admin:hunter2@cam.example:8554/ch1")
    assert camera.kind is StreamKind.RTSP and camera.has_credentials
    assert camera.public == "rtsp://cam.example:8554/ch1"
    assert parse_stream_url("https://cdn.example/live/index.M3U8?token=1").kind is StreamKind.HLS
    for bad in (
        "http://cdn.example/video.mp4",  # not a playlist: a URL job downloads it
        "https://user:pw@cdn.example/live.m3u8",
        "rtmp://cdn.example/live",
        "file:///tmp/live.m3u8",
        "rtsp:///nohost",
        "not a url",
    ):
        with pytest.raises(StreamURLError):
            parse_stream_url(bad)
